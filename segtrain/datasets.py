"""The dataset a run trains on or is scored on: opened by name or folder, its columns checked.

A run names its dataset as brinelite does (``scope/name[@version]``, or an installed folder);
``open_dataset`` adds one line for a raw image folder that is no dataset yet, and
``check_columns`` one for a dataset lacking the image or mask column, before Keras loads.

    data = open_dataset("demo/membrane")
    check_columns(data, "image", "mask")
"""

from __future__ import annotations

import re
from pathlib import Path

import brinelite
from segtrain.errors import SegtrainError


def check_columns(dataset: brinelite.Dataset, *names: str) -> None:
    """Refuse a dataset lacking one of the image columns ``names`` (the image and its mask)."""
    columns = {column.name: column for column in dataset.columns}
    for name in names:
        if name not in columns or not columns[name].isimage():
            found = ", ".join(f"{c.name} ({c.type})" for c in dataset.columns)
            raise SegtrainError(
                f"dataset {dataset.name} has no image column {name!r} (its columns: {found}); "
                "name the image and mask columns with --image-column and --mask-column"
            )


def open_dataset(name: str) -> brinelite.Dataset:
    """``brinelite.load_dataset(name)``, with one line for a folder that is no dataset yet.

    A raw images/ + masks/ folder (``brinelite show`` reads one) has no manifest: nothing pins
    its files, so a run could not find the same data again. It is refused with the command
    that installs it as a dataset; a path that does not exist is refused as a path, not as
    an invalid dataset name.

    Example::

        data = open_dataset("demo/membrane")
    """
    folder = Path(name).expanduser()
    if folder.is_dir() and not (folder / "manifest.json").is_file():
        stem = re.sub(r"[^a-z0-9._-]+", "-", folder.resolve().name.lower()).strip("-._")
        suggested = f"local/{stem or 'dataset'}"
        raise SegtrainError(
            f"{name} is a folder but no brinelite dataset (it has no manifest.json); install it "
            f"as one first: brinelite install {name} --name {suggested} (then use {suggested})"
        )
    if name.startswith(("/", "./", "../", "~")) and not folder.exists():
        raise SegtrainError(f"no such dataset folder: {name}")
    return brinelite.load_dataset(name)
