"""Contact sheets: a grid of samples with their masks laid over them.

Looking at a dataset before training on it catches swapped masks, empty masks
and misaligned pairs in seconds; ``brinelite show`` writes such a sheet.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from .classes import ClassMap
from .dataset import Dataset
from .errors import DataError

TILE = 224
SHEET_SUFFIXES = (".png", ".jpg", ".jpeg")
OVERLAY_COLOUR = np.array([255, 40, 40], dtype=np.float32)  # RGB red


def _rgb(array: np.ndarray) -> np.ndarray:
    """Any (H, W, C) image as 8-bit RGB."""
    if array.dtype != np.uint8:
        array = cv2.normalize(array, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    channels = array.shape[2]
    return np.repeat(array, 3, axis=2) if channels == 1 else array[:, :, :3]


def overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """``image`` (RGB uint8) with the foreground of ``mask`` tinted red."""
    grey = _rgb(mask).mean(axis=2)
    foreground = (grey >= 100)[:, :, np.newaxis]
    tinted = image.astype(np.float32) * (1 - alpha) + OVERLAY_COLOUR * alpha
    return np.where(foreground, tinted, image).astype(np.uint8)


def class_overlay(
    image: np.ndarray, mask: np.ndarray, classes: ClassMap, alpha: float = 0.55
) -> np.ndarray:
    """``image`` (RGB uint8) with each pixel tinted by its class's colour (void left as is)."""
    indices = classes.to_indices(mask)
    colours = np.vstack([classes.palette(), np.zeros((1, 3), np.uint8)])[indices]
    tinted = image.astype(np.float32) * (1 - alpha) + colours.astype(np.float32) * alpha
    void = (indices == classes.void_index)[:, :, np.newaxis]
    return np.where(void, image, tinted).astype(np.uint8)


def legend(classes: ClassMap, width: int) -> np.ndarray:
    """A strip naming each class beside a swatch of its colour, ``width`` pixels wide."""
    per_line = max(1, width // 160)
    lines = math.ceil(len(classes.classes) / per_line)
    strip = np.full((lines * 22 + 6, width, 3), 255, dtype=np.uint8)
    for k, (item, colour) in enumerate(zip(classes.classes, classes.palette(), strict=True)):
        x, y = (k % per_line) * 160 + 8, (k // per_line) * 22 + 6
        cv2.rectangle(strip, (x, y), (x + 14, y + 14), tuple(int(c) for c in colour), -1)
        label = f"{item.id} {item.name}"[:18]
        cv2.putText(strip, label, (x + 20, y + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    return strip


def _tile(dataset: Dataset, position: int, image_col: str, mask_col: str | None) -> np.ndarray:
    row = dataset[position]._asdict()
    image = _rgb(dataset.load_image(row[image_col]))
    if mask_col is not None:
        mask = dataset.load_image(row[mask_col])
        if mask.shape[:2] != image.shape[:2]:
            raise DataError(f"Row {position}: mask {row[mask_col]} is not the image's size.")
        classes = dataset.manifest.classes
        image = overlay(image, mask) if classes is None else class_overlay(image, mask, classes)
    scale = TILE / max(image.shape[:2])
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    tile = np.full((TILE, TILE, 3), 32, dtype=np.uint8)
    top, left = (TILE - small.shape[0]) // 2, (TILE - small.shape[1]) // 2
    tile[top : top + small.shape[0], left : left + small.shape[1]] = small
    cv2.putText(tile, str(position), (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1)
    return tile


def _drawn(dataset: Dataset, position: int, image_col: str, mask_col: str | None) -> np.ndarray:
    """One tile; an OpenCV failure becomes a one-line error naming the row's image."""
    try:
        return _tile(dataset, position, image_col, mask_col)
    except cv2.error as exc:
        shown = getattr(dataset[position], image_col)
        raise DataError(f"Row {position} ({shown}) cannot be drawn: {exc.err or exc}.") from exc


def contact_sheet(dataset: Dataset, out: Path, rows: int = 16, columns: int = 4) -> Path:
    """Write a PNG (or JPEG) grid of the first ``rows`` samples, masks over images.

    Binary masks tint their foreground red; class maps colour each class by its palette
    (``classes.json`` colours, else a fixed colormap) with a legend under the grid.

    Every image is decoded with :func:`brinelite.read_image` (pixel ceiling included); a
    dataset without rows or image columns, or an ``out`` that is not .png/.jpg, is refused
    before anything is drawn. Returns ``out``.
    """
    out = Path(out)
    if out.suffix.lower() not in SHEET_SUFFIXES:
        raise DataError(
            f"Cannot write {out}: a contact sheet is an image; use a path ending in "
            f"{', '.join(SHEET_SUFFIXES)}."
        )
    image_columns = [c.name for c in dataset.manifest.columns if c.isimage()]
    if not image_columns:
        raise DataError(f"Dataset {dataset.name} has no image column to show.")
    if len(dataset) == 0:
        raise DataError(f"Dataset {dataset.name} has no rows to show.")
    mask_col = image_columns[1] if len(image_columns) > 1 else None
    count = min(rows, len(dataset))
    tiles = [_drawn(dataset, i, image_columns[0], mask_col) for i in range(count)]
    tiles += [np.zeros_like(tiles[0])] * (math.ceil(count / columns) * columns - count)
    lines = [np.hstack(tiles[i : i + columns]) for i in range(0, len(tiles), columns)]
    if mask_col is not None and dataset.manifest.classes is not None:
        lines.append(legend(dataset.manifest.classes, lines[0].shape[1]))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        written = cv2.imwrite(str(out), cv2.cvtColor(np.vstack(lines), cv2.COLOR_RGB2BGR))
    except (OSError, cv2.error) as exc:
        raise DataError(f"Cannot write {out}: {exc}.") from exc
    if not written:
        raise DataError(f"Cannot write {out}: use a .png or .jpg path in a writable folder.")
    return out
