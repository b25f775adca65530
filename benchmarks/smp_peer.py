"""The races' smp peer: a segmentation-models-pytorch loop as its users write it.

brinelite's ``to_torch`` feeds it as docs/pytorch.md's recipe does: segtrain's processing
(``prepare``: RGB, mask, resize, cached on disk) with flips as the only augmentation,
``DataLoader(batch_size=8, shuffle=True, num_workers=2)``; ``smp.Unet("resnet34",
encoder_weights=None)``, Adam 2e-4, float32, 128 px; DiceLoss + BCE for binary masks (kvasir,
benchmark 10), cross-entropy + multi-class DiceLoss ignoring void for a class map (CamVid,
benchmark 8). After every epoch it computes the validation loss and keeps a copy of the
weights of the best epoch so far.

The harness adds two things, as it does to ``benchmarks.newcomer``: the wall-clock budget,
counted from the first batch and read after every batch like segtrain's ``TimeLimit`` (the
cut epoch still validates), and the scoring: the best weights predict every validation image,
scored by ``segtrain.evaluation.score_fold`` exactly as segtrain's runs are (``scores.json``);
with ``--predict FOLDER`` they also predict every image there, class ids at the image's own
size written to ``OUT/predictions/NAME.png`` for benchmark 8's scoring.

    python -m benchmarks.smp_peer DATASET OUT --val 20 --seed 42 --budget 300
    python -m benchmarks.smp_peer DATASET OUT --val-split val --seed 1 --budget 300

Run it in its own process: torchvision (which smp imports) crashes in a process that imported
TensorFlow first. torch comes first here; the scoring imports TensorFlow later, which is safe.
"""

from __future__ import annotations

import argparse
import copy
import csv
import functools
import json
import math
import time
from pathlib import Path

import cv2
import numpy as np
import segmentation_models_pytorch as smp
import torch
from torch.utils.data import DataLoader

import brinelite
from benchmarks.data import split_folds
from segtrain.processing import make_processor
from segtrain.tasks import MaskTask, task_for

IGNORE_INDEX = -100  # brinelite.torch_io's void, CrossEntropyLoss' default
ENCODER = "resnet34"
LR = 2e-4
WORKERS = 2


def flips(sample, rng: np.random.Generator, finish):
    """The user's augmentation: a horizontal and a vertical flip, each with probability 0.5,
    then ``finish`` (segtrain's validation stage: scale to [0, 1], threshold the mask)."""
    image, mask = sample
    if rng.random() < 0.5:
        image, mask = image[:, ::-1], mask[:, ::-1]
    if rng.random() < 0.5:
        image, mask = image[::-1], mask[::-1]
    return finish((np.ascontiguousarray(image), np.ascontiguousarray(mask)))


def _loss(task: MaskTask):
    """Dice + BCE for binary masks; for a class map, cross-entropy + dice, void ignored."""
    if task.outputs == 1:
        dice, entropy = smp.losses.DiceLoss("binary"), torch.nn.BCEWithLogitsLoss()
    else:
        dice = smp.losses.DiceLoss("multiclass", ignore_index=IGNORE_INDEX)
        entropy = torch.nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
    return lambda logits, y: dice(logits, y) + entropy(logits, y)


def _validation_loss(model, loader, loss_fn) -> float:
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for x, y in loader:
            total += loss_fn(model(x), y).item() * len(x)
            count += len(x)
    return total / count


def train(
    validation, training, task: MaskTask, out: Path, budget: float, size: int, batch: int, seed: int
):
    """Train for ``budget`` seconds; write history.csv and best.pt; return the best model."""
    check = make_processor(size, augment=False, task=task)
    augment = functools.partial(flips, finish=check.augment)
    train_samples = training.to_torch(
        "image", "mask", prepare=check.prepare, augment=augment, prepare_key=check.key, seed=seed
    )
    val_samples = validation.to_torch(
        "image", "mask", prepare=check.prepare, augment=check.augment, prepare_key=check.key
    )
    train_loader = DataLoader(
        train_samples, batch, shuffle=True, num_workers=WORKERS, persistent_workers=True
    )
    val_loader = DataLoader(val_samples, batch, num_workers=WORKERS, persistent_workers=True)
    torch.manual_seed(seed)
    model = smp.Unet(ENCODER, encoder_weights=None, in_channels=3, classes=task.outputs)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = _loss(task)
    history, best, best_state = [], math.inf, None
    start = time.monotonic()
    while time.monotonic() - start < budget:
        train_samples.set_epoch(len(history))
        model.train()
        total, count = 0.0, 0
        for x, y in train_loader:
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            total, count = total + loss.item() * len(x), count + len(x)
            if time.monotonic() - start >= budget:
                break
        val_loss = _validation_loss(model, val_loader, loss_fn)
        history.append({"epoch": len(history), "loss": total / count, "val_loss": val_loss})
        if val_loss < best:
            best, best_state = val_loss, copy.deepcopy(model.state_dict())
    with (out / "history.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["epoch", "loss", "val_loss"])
        writer.writeheader()
        writer.writerows(history)
    torch.save(best_state, out / "best.pt")
    model.load_state_dict(best_state)
    return model.eval()


class KerasLike:
    """The smp model behind the two things segtrain's scoring asks of a Keras model: the input
    shape and ``predict`` (channels-last float32 batches in, probabilities out: a sigmoid for
    one output, a softmax over the classes otherwise)."""

    def __init__(self, model, size: int, outputs: int) -> None:
        self.model, self.input_shape = model, (None, size, size, 3)
        self.output_shape = (None, size, size, outputs)
        self.activation = torch.sigmoid if outputs == 1 else functools.partial(torch.softmax, dim=1)

    def predict(self, batch: np.ndarray, batch_size: int, verbose: int = 0) -> np.ndarray:
        outputs = []
        with torch.no_grad():
            for start in range(0, len(batch), batch_size):
                x = torch.from_numpy(batch[start : start + batch_size].transpose(0, 3, 1, 2))
                outputs.append(self.activation(self.model(x.contiguous())).numpy())
        return np.concatenate(outputs).transpose(0, 2, 3, 1)


def predict_folder(model: KerasLike, folder: Path, out: Path) -> None:
    """Class ids of every image in ``folder`` at its own size, as ``out/NAME.png``: the image
    processed as for validation (``prepare_image``), argmax, resized back by nearest neighbour."""
    from segtrain.processing import prepare_image

    out.mkdir(parents=True, exist_ok=True)
    size = model.input_shape[1]
    for path in sorted(folder.iterdir()):
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        probabilities = model.predict(prepare_image(image, size)[np.newaxis], 1)[0]
        ids = np.argmax(probabilities, axis=-1).astype(np.uint8)
        full = cv2.resize(ids, image.shape[1::-1], interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(str(out / f"{path.stem}.png"), full)


def main(argv: list[str] | None = None) -> None:
    """Train smp on the dataset for ``--budget`` seconds; score (and predict) into ``out``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", help="an installed brinelite dataset")
    parser.add_argument("out", type=Path)
    folds = parser.add_mutually_exclusive_group(required=True)
    folds.add_argument("--val", type=int, help="validation rows, drawn with --seed")
    folds.add_argument("--val-split", help="validate on this declared split, train on the rest")
    parser.add_argument("--seed", type=int, default=42, help="torch's seed (and --val's split)")
    parser.add_argument("--budget", type=float, required=True, help="seconds of training")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--predict", type=Path, help="a folder of images to predict class ids of")
    args = parser.parse_args(argv)

    dataset = brinelite.load_dataset(args.dataset)
    task = task_for(dataset.manifest.classes)
    if args.val_split:
        validation, training = split_folds(dataset, args.val_split)
    else:
        validation, training = dataset.create_folds((args.val,), shuffle=True, seed=args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    model = train(
        validation, training, task, args.out, args.budget, args.size, args.batch_size, args.seed
    )
    model = KerasLike(model, args.size, task.outputs)
    if args.predict:
        predict_folder(model, args.predict, args.out / "predictions")

    from segtrain.evaluation import score_fold

    summary = score_fold(model, validation, task).summary
    scores = {"val": [int(i) for i in validation.indices], "summary": summary}
    (args.out / "scores.json").write_text(json.dumps(scores))


if __name__ == "__main__":
    main()
