"""The kvasir race's smp peer: a segmentation-models-pytorch loop as its users write it.

brinelite's ``to_torch`` feeds it as docs/pytorch.md's recipe does: segtrain's processing
(``prepare``: RGB, binary mask, resize, cached on disk) with flips as the only augmentation,
``DataLoader(batch_size=8, shuffle=True, num_workers=2)``; ``smp.Unet("resnet34",
encoder_weights=None)``, Adam 2e-4, DiceLoss + BCE, float32, 128 px. After every epoch it
computes the validation loss and keeps a copy of the weights of the best epoch so far.

The harness adds two things, as it does to ``benchmarks.newcomer``: the wall-clock budget,
counted from the first batch and read after every batch like segtrain's ``TimeLimit`` (the
cut epoch still validates), and the scoring: the best weights predict every validation image,
scored by ``segtrain.evaluation.score_fold`` exactly as segtrain's runs are (``scores.json``).

    python -m benchmarks.smp_peer DATASET OUT --val 20 --seed 42 --budget 300

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

import numpy as np
import segmentation_models_pytorch as smp
import torch
from torch.utils.data import DataLoader

import brinelite
from segtrain.processing import make_processor

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


def _loss():
    dice, bce = smp.losses.DiceLoss("binary"), torch.nn.BCEWithLogitsLoss()
    return lambda logits, y: dice(logits, y) + bce(logits, y)


def _validation_loss(model, loader, loss_fn) -> float:
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for x, y in loader:
            total += loss_fn(model(x), y).item() * len(x)
            count += len(x)
    return total / count


def train(validation, training, out: Path, budget: float, size: int, batch: int, seed: int):
    """Train for ``budget`` seconds; write history.csv and best.pt; return the best model."""
    check = make_processor(size, augment=False)
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
    model = smp.Unet(ENCODER, encoder_weights=None, in_channels=3, classes=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = _loss()
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
    shape and ``predict`` (channels-last float32 batches in, sigmoid probabilities out)."""

    def __init__(self, model, size: int) -> None:
        self.model, self.input_shape, self.output_shape = model, (None, size, size, 3), (None, 1)

    def predict(self, batch: np.ndarray, batch_size: int, verbose: int = 0) -> np.ndarray:
        outputs = []
        with torch.no_grad():
            for start in range(0, len(batch), batch_size):
                x = torch.from_numpy(batch[start : start + batch_size].transpose(0, 3, 1, 2))
                outputs.append(torch.sigmoid(self.model(x.contiguous())).numpy())
        return np.concatenate(outputs).transpose(0, 2, 3, 1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", help="an installed brinelite dataset")
    parser.add_argument("out", type=Path)
    parser.add_argument("--val", type=int, required=True, help="validation rows")
    parser.add_argument("--seed", type=int, default=42, help="the split's seed, and torch's")
    parser.add_argument("--budget", type=float, required=True, help="seconds of training")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args(argv)

    dataset = brinelite.load_dataset(args.dataset)
    validation, training = dataset.create_folds((args.val,), shuffle=True, seed=args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    model = train(
        validation, training, args.out, args.budget, args.size, args.batch_size, args.seed
    )

    from segtrain.evaluation import score_fold
    from segtrain.tasks import BinaryMasks

    summary = score_fold(KerasLike(model, args.size), validation, BinaryMasks()).summary
    scores = {"val": [int(i) for i in validation.indices], "summary": summary}
    (args.out / "scores.json").write_text(json.dumps(scores))


if __name__ == "__main__":
    main()
