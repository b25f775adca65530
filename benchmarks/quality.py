"""6. Quality per CPU minute: validation dice and IoU after a fixed wall-clock budget.

Each configuration (model, input size, batch size) trains on 24 ``membrane`` pairs with the
seed's augmentation until its budget runs out (checked after every batch), then predicts
the 6 held-out pairs. Predictions are resized back to 512x512 and thresholded at 0.5, so
every size is scored on the same full-resolution masks. The trivial predictor says
"foreground" everywhere; membrane masks are mostly foreground, so it scores high.
"""

from __future__ import annotations

import ctypes
import time

import numpy as np

from benchmarks import data

# (model, input size, batch size): the demo's choice first, then a larger input.
CONFIGS = [("small", 128, 1), ("small", 256, 2)]
LEARNING_RATE = 3e-4  # the demo's; the seed's 1e-4 learns too little in minutes


def _budget_stop(seconds: float):
    import keras

    class Budget(keras.callbacks.Callback):
        """Stops training once ``seconds`` of wall time have passed."""

        def on_train_begin(self, logs=None) -> None:
            self.start, self.steps = time.perf_counter(), 0

        def on_train_batch_end(self, batch, logs=None) -> None:
            self.steps += 1
            if time.perf_counter() - self.start > seconds:
                self.model.stop_training = True

    return Budget()


def train_and_score(model_name: str, size: int, batch: int, seconds: float) -> dict:
    import cv2

    from segtrain.evaluate import dice as score_dice
    from segtrain.evaluate import iou as score_iou
    from segtrain.losses import compile_model
    from segtrain.processing import fix_mask, make_processor, prepare_image
    from segtrain.train import MallocThresholds
    from segtrain.unet import build_model

    dataset = data.dataset("membrane")
    validation, train = dataset.create_folds((6,), seed=0)
    model = compile_model(build_model(model_name, size), lr=LEARNING_RATE)
    feed = train.to_keras(
        "image", "mask", batch_size=batch, processing_function=make_processor(size), seed=0
    )
    budget = _budget_stop(seconds)
    start = time.perf_counter()
    speed = MallocThresholds(ctypes.CDLL("libc.so.6"))  # as segtrain train uses (Linux)
    model.fit(feed, epochs=10_000, verbose=0, callbacks=[budget, speed])
    trained = time.perf_counter() - start
    truths, preds = [], []
    for row in validation:
        image = dataset.load_image(row.image)
        truth = fix_mask(dataset.load_image(row.mask).astype(np.float32)) > 0
        prob = model.predict(prepare_image(image, size)[np.newaxis], verbose=0)[0, ..., 0]
        full = cv2.resize(prob, truth.shape[::-1], interpolation=cv2.INTER_LINEAR)
        truths.append(truth)
        preds.append(full > 0.5)
    truth, pred = np.stack(truths), np.stack(preds)
    dice, iou = score_dice(pred, truth), score_iou(pred, truth)
    everything = np.ones_like(truth)
    trivial_dice, trivial_iou = score_dice(everything, truth), score_iou(everything, truth)
    return {
        "model": model_name,
        "size": size,
        "batch": batch,
        "train_s": trained,
        "steps": budget.steps,
        "epochs": budget.steps / len(feed),
        "val_dice": dice,
        "val_iou": iou,
        "all_foreground_dice": trivial_dice,
        "all_foreground_iou": trivial_iou,
    }


def run(smoke: bool = False) -> dict:
    if smoke:
        return {"budget_s": 5, "configs": [train_and_score("tiny", 64, 4, 5)]}
    seconds = 300
    return {"budget_s": seconds, "configs": [train_and_score(*c, seconds) for c in CONFIGS]}
