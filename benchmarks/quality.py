"""6. Quality per CPU minute: validation dice and IoU after a fixed wall-clock budget.

Each configuration (model, input size, batch size) trains on 24 ``membrane`` pairs with the
seed's augmentation for a list of wall-clock budgets: the weights are copied when each budget
runs out (checked after every batch) and training stops at the last, so one 15-minute run also
gives the 5-minute figure. Each copy predicts the 6 held-out pairs; predictions are resized
back to 512x512 and thresholded at 0.5, so every size is scored on the same full-resolution
masks. The trivial predictor says "foreground" everywhere; membrane masks are mostly
foreground, so it scores high.
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks import data

# (model, input size, batch size, budgets in seconds): the demo's choice, then a larger input.
CONFIGS = [("small", 128, 1, (300, 900)), ("small", 256, 2, (300,))]
LEARNING_RATE = 3e-4  # the demo's; the seed's 1e-4 learns too little in minutes


def _budget_marks(seconds: tuple[float, ...]):
    import keras

    class Budgets(keras.callbacks.Callback):
        """Copies the weights as each budget of wall time passes; stops after the last."""

        def on_train_begin(self, logs=None) -> None:
            self.start, self.steps, self.snapshots = time.perf_counter(), 0, []

        def on_train_batch_end(self, batch, logs=None) -> None:
            self.steps += 1
            elapsed = time.perf_counter() - self.start
            if elapsed > seconds[len(self.snapshots)]:
                self.snapshots.append((elapsed, self.steps, self.model.get_weights()))
                self.model.stop_training = len(self.snapshots) == len(seconds)

    return Budgets()


def _score(model, dataset, validation) -> dict:
    """Dice and IoU of ``model`` on the validation rows at full resolution, and the trivial's."""
    from segtrain.losses import dice, iou
    from segtrain.prediction import predict
    from segtrain.processing import fix_mask

    images = [dataset.load_image(row.image) for row in validation]
    truths = [fix_mask(dataset.load_image(row.mask).astype(np.float32)) > 0 for row in validation]
    preds = [probability > 0.5 for probability in predict(model, images)]
    truth, pred = np.stack(truths), np.stack(preds)
    everything = np.ones_like(truth)
    return {
        "val_dice": float(dice(truth, pred, smooth=0)),
        "val_iou": float(iou(truth, pred, smooth=0)),
        "all_foreground_dice": float(dice(truth, everything, smooth=0)),
        "all_foreground_iou": float(iou(truth, everything, smooth=0)),
    }


def train_and_score(model_name: str, size: int, batch: int, budgets: tuple[float, ...]) -> list:
    """One training run of a configuration, scored at each budget."""
    from segtrain.losses import compile_model
    from segtrain.models import build_model
    from segtrain.processing import make_processor

    dataset = data.dataset("membrane")
    validation, train = dataset.create_folds((6,), seed=0)
    model = compile_model(build_model(model_name, size), lr=LEARNING_RATE)
    feed = train.to_keras(
        "image", "mask", batch_size=batch, processing_function=make_processor(size), seed=0
    )
    marks = _budget_marks(budgets)
    model.fit(feed, epochs=10_000, verbose=0, callbacks=[marks])
    results = []
    for budget, (elapsed, steps, weights) in zip(budgets, marks.snapshots, strict=True):
        model.set_weights(weights)
        config = {"model": model_name, "size": size, "batch": batch, "budget_s": budget}
        run = {"train_s": elapsed, "steps": steps, "epochs": steps / len(feed)}
        results.append(config | run | _score(model, dataset, validation))
    return results


def run(smoke: bool = False) -> dict:
    configs = [("tiny", 64, 4, (3, 6))] if smoke else CONFIGS
    return {"configs": [result for config in configs for result in train_and_score(*config)]}
