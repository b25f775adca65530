"""The quality race's baseline: the seed's training as a newcomer writes it, in plain Keras.

No brinelite and none of segtrain's pipeline: two lists of (image, mask) files, a Python
generator that decodes every pair with OpenCV in one thread every epoch (as Carvana's
``train_generator``), the seed's processing and augmentation (imported from segtrain, where a
newcomer copies Carvana's functions), Carvana's U-Net 256 (``get_unet_256``: RMSprop 1e-4,
bce + dice, float32, Keras' default policy), batches of 1 as the seed, and the seed's
callbacks. The race's wall-clock budget is the one thing the harness adds (``TimeLimit``).

    python -m benchmarks.newcomer SPLIT.json OUT --budget 240
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import cv2
import numpy as np


def read_pair(image_path: str, mask_path: str) -> tuple[np.ndarray, np.ndarray]:
    """An image (RGB) and its mask (grey) as float32 0-255, decoded with OpenCV."""
    image = cv2.cvtColor(cv2.imread(image_path), cv2.COLOR_BGR2RGB)
    mask = cv2.imread(mask_path, cv2.IMREAD_GRAYSCALE)
    return image.astype(np.float32), mask.astype(np.float32)


def generator(pairs: list[list[str]], batch_size: int, process, shuffle: bool, seed: int = 0):
    """Endless batches: decode, process and stack every pair, every epoch, in this thread."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(len(pairs)) if shuffle else np.arange(len(pairs))
        for start in range(0, len(pairs), batch_size):
            samples = [process(read_pair(*pairs[k])) for k in order[start : start + batch_size]]
            yield np.stack([s[0] for s in samples]), np.stack([s[1] for s in samples])


def build(model: str, size: int):
    """Carvana's ``get_unet_256`` for "unet256"; another segtrain model for smoke runs."""
    from segtrain.models import build_model, get_unet_256

    return get_unet_256() if model == "unet256" else build_model(model, size)


def main(argv: list[str] | None = None) -> None:
    """Train as the newcomer's script does for ``--budget`` seconds into ``out``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("split", type=Path, help='JSON {"train": [[image, mask]...], "val": ...}')
    parser.add_argument("out", type=Path)
    parser.add_argument("--budget", type=float, required=True, help="seconds of training")
    parser.add_argument("--model", default="unet256")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=1)
    args = parser.parse_args(argv)

    import keras

    from segtrain.processing import make_processor
    from segtrain.time_limit import TimeLimit

    split = json.loads(args.split.read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(42)
    model = build(args.model, args.size)
    train = generator(split["train"], args.batch_size, make_processor(args.size), shuffle=True)
    val = generator(split["val"], args.batch_size, make_processor(args.size, False), False)
    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=8, min_delta=1e-4),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.1, patience=4),
        keras.callbacks.ModelCheckpoint(
            args.out / "best.weights.h5", save_best_only=True, save_weights_only=True
        ),
        keras.callbacks.CSVLogger(args.out / "history.csv"),
        TimeLimit(args.budget),
    ]
    model.fit(
        train,
        steps_per_epoch=math.ceil(len(split["train"]) / args.batch_size),
        epochs=100,
        validation_data=val,
        validation_steps=math.ceil(len(split["val"]) / args.batch_size),
        callbacks=callbacks,
        verbose=0,
    )


if __name__ == "__main__":
    main()
