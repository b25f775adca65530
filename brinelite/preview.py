"""Contact sheets: a grid of samples with their masks laid over them.

Looking at a dataset before training on it catches swapped masks, empty masks
and misaligned pairs in seconds; ``brinelite show`` writes such a sheet.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .classes import BINARY_THRESHOLD, MAX_ID, ClassMap, binary_counts, label_map_error
from .dataset import Dataset
from .errors import DataError

TILE = 224
GAP = 8  # pixels between tiles and around the sheet
TITLE = 20  # the strip above each tile naming its row and file
BACKGROUND = (245, 245, 245)  # the sheet's, around and between tiles (never black cells)
SHEET_SUFFIXES = (".png", ".jpg", ".jpeg")
OVERLAY_COLOUR = np.array([0, 255, 255], dtype=np.float32)  # RGB cyan: readable on red tissue


def _rgb(array: np.ndarray) -> np.ndarray:
    """Any (H, W, C) image as 8-bit RGB."""
    if array.dtype != np.uint8:
        array = cv2.normalize(array, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    channels = array.shape[2]
    return np.repeat(array, 3, axis=2) if channels == 1 else array[:, :, :3]


def overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.25) -> np.ndarray:
    """``image`` (RGB uint8) with the foreground of ``mask`` outlined and lightly filled.

    Foreground is grey >= :data:`~brinelite.classes.BINARY_THRESHOLD`, as training reads it;
    the outline stays visible on images of the fill's own hue (red polyps on red tissue).
    """
    foreground = (_rgb(mask).mean(axis=2) >= BINARY_THRESHOLD).astype(np.uint8)
    tinted = image.astype(np.float32) * (1 - alpha) + OVERLAY_COLOUR * alpha
    drawn = np.where(foreground[:, :, np.newaxis] > 0, tinted, image).astype(np.uint8)
    contours, _ = cv2.findContours(foreground, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    colour = tuple(int(c) for c in OVERLAY_COLOUR)
    return cv2.drawContours(np.ascontiguousarray(drawn), contours, -1, colour, 2)


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


def _sample(dataset: Dataset, position: int, columns: tuple[str, str | None]) -> tuple:
    """Row ``position``'s image (RGB) and mask (or None), decoded; sizes must agree."""
    image_col, mask_col = columns
    row = dataset[position]._asdict()
    image = _rgb(dataset.load_image(row[image_col]))
    if mask_col is None:
        return image, None
    mask = dataset.load_image(row[mask_col])
    if mask.shape[:2] != image.shape[:2]:
        raise DataError(f"Row {position}: mask {row[mask_col]} is not the image's size.")
    return image, mask


def _tile(image: np.ndarray, mask: np.ndarray | None, classes: ClassMap | None, title: str):
    """A TILE-wide cell: the title, then the image scaled to fit TILE x TILE, mask over it.

    The mask is scaled with nearest neighbour (ids are never blended) before it is drawn, so
    outlines are as thick on a large image as on a small one.
    """
    scale = TILE / max(image.shape[:2])
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    if mask is not None:
        ids = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST).reshape(*small.shape[:2], -1)
        small = overlay(small, ids) if classes is None else class_overlay(small, ids, classes)
    cell = np.full((TITLE + small.shape[0], TILE, 3), BACKGROUND, dtype=np.uint8)
    left = (TILE - small.shape[1]) // 2
    cell[TITLE:, left : left + small.shape[1]] = small
    cv2.putText(cell, title[:34], (2, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (30, 30, 30), 1)
    return cell


def pick_rows(count: int, n: int, seed: int | None) -> list[int]:
    """``n`` positions of ``count`` drawn at random with ``seed`` (all when fewer), in order."""
    if n >= count:
        return list(range(count))
    return sorted(int(k) for k in np.random.default_rng(seed).choice(count, n, replace=False))


def _grid(cells: list[np.ndarray], columns: int) -> np.ndarray:
    """The cells in lines of ``columns`` with GAP between and around them; the last line's
    missing cells, and the space under cells shorter than the tallest, are background."""
    height, width = max(cell.shape[0] for cell in cells), TILE
    lines = math.ceil(len(cells) / columns)
    sheet = np.full(
        (GAP + lines * (height + GAP), GAP + columns * (width + GAP), 3), BACKGROUND, np.uint8
    )
    for k, cell in enumerate(cells):
        y, x = GAP + (k // columns) * (height + GAP), GAP + (k % columns) * (width + GAP)
        sheet[y : y + cell.shape[0], x : x + width] = cell
    return sheet


def _check_label_maps(masks: list[np.ndarray], where: Path, class_map_file: Path) -> None:
    """Refuse masks that look like class ids (see ``label_map_error``): they would draw nothing."""
    counts = np.zeros(MAX_ID + 1, np.int64)
    for mask in masks:
        found = binary_counts(mask)
        if found is not None:
            counts += found
    error = label_map_error(counts, f"masks of {where} shown", str(class_map_file))
    if error is not None:
        raise error


def contact_sheet(
    dataset: Dataset,
    out: Path,
    n: int = 16,
    seed: int | None = 0,
    columns: int = 4,
    class_map_file: Path | None = None,
) -> Path:
    """Write a PNG (or JPEG) grid of ``n`` samples drawn with ``seed``, masks over images.

    Binary masks are outlined and lightly filled in cyan; class maps colour each class by its
    palette (``classes.json`` colours, else a fixed colormap) with a legend under the grid.
    Each tile is titled with its row and image file; rows are drawn at random (``seed``) so
    a video's neighbouring frames do not fill the sheet, and shown in row order.

    Every image is decoded with :func:`brinelite.read_image` (pixel ceiling included); a
    dataset without rows or image columns, or an ``out`` that is not .png/.jpg, is refused
    before anything is drawn. ``class_map_file`` (a raw folder's ``classes.json`` that does
    not exist yet): refuse binary masks that look like class ids, naming that file. Returns
    ``out``.

    Example: ``contact_sheet(brinelite.load_dataset("demo/membrane"), Path("grid.png"), n=8)``.
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
    positions = pick_rows(len(dataset), n, seed)
    titles = [f"{k}  {Path(getattr(dataset[k], image_columns[0])).name}" for k in positions]
    samples = [
        _drawn(title, partial(_sample, dataset, k, (image_columns[0], mask_col)))
        for k, title in zip(positions, titles, strict=True)
    ]
    classes = dataset.manifest.classes
    if class_map_file is not None and classes is None and mask_col is not None:
        _check_label_maps([mask for _, mask in samples], dataset.path, class_map_file)
    cells = [
        _drawn(title, partial(_tile, image, mask, classes, title))
        for title, (image, mask) in zip(titles, samples, strict=True)
    ]
    lines = [_grid(cells, min(columns, len(cells)))]
    if mask_col is not None and classes is not None:
        lines.append(legend(classes, lines[0].shape[1]))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        written = cv2.imwrite(str(out), cv2.cvtColor(np.vstack(lines), cv2.COLOR_RGB2BGR))
    except (OSError, cv2.error) as exc:
        raise DataError(f"Cannot write {out}: {exc}.") from exc
    if not written:
        raise DataError(f"Cannot write {out}: use a .png or .jpg path in a writable folder.")
    return out


def _drawn(title: str, draw: Callable[[], Any]) -> Any:
    """``draw()``; an OpenCV failure becomes a one-line error naming the row and its image."""
    try:
        return draw()
    except cv2.error as exc:
        row, name = title.split("  ", 1)
        raise DataError(f"Row {row} ({name}) cannot be drawn: {exc.err or exc}.") from exc
