"""Scores of a class map's predictions: confusion matrix, per-class IoU and dice, mIoU, accuracy.

Everything is computed from one N x N confusion matrix (rows: true class, columns: predicted
class) over the pixels that are not void, so the per-image scores, the fold's scores and the
baselines' are all the same arithmetic:

    matrix = confusion(truth_indices, predicted_indices, classes=11)
    scores = class_scores(matrix, names)   # {"miou": ..., "pixel_accuracy": ..., "per_class": ...}

IoU_c = TP / (TP + FP + FN), dice_c = 2 TP / (2 TP + FP + FN); the means (``miou``, ``dice``) run
over the classes present in the truth, so a class the images lack neither helps nor hurts.
Pixel accuracy is the share of non-void pixels whose class is right. Numpy (and matplotlib for
the picture) only.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

import brinelite


def confusion(truth: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """Counts of (true class, predicted class) over the pixels whose truth is not void.

    Args:
        truth: training indices (0..classes-1; ``classes`` and above are void), any shape.
        predicted: class indices of the same shape (0..classes-1).
        classes: the number of classes N.

    Returns:
        An (N, N) int64 matrix.

    Example::

        confusion(np.array([0, 1, 2]), np.array([0, 0, 1]), classes=2)  # [[1, 0], [1, 0]]
    """
    truth, predicted = np.ravel(truth).astype(np.int64), np.ravel(predicted).astype(np.int64)
    keep = truth < classes
    pairs = truth[keep] * classes + np.clip(predicted[keep], 0, classes - 1)
    return np.bincount(pairs, minlength=classes * classes).reshape(classes, classes)


def class_scores(matrix: np.ndarray, names: list[str]) -> dict[str, Any]:
    """mIoU and mean dice over the classes present, pixel accuracy, and per-class scores.

    Args:
        matrix: a confusion matrix from ``confusion``.
        names: the class names, in index order.

    Returns:
        ``{"miou", "dice", "pixel_accuracy", "per_class": {name: {"iou", "dice", "pixels"}}}``;
        a class absent from the truth has ``pixels`` 0 and is left out of the means. With no
        labelled pixel at all, every score is 0.

    Example::

        class_scores(confusion(truth, predicted, 2), ["road", "car"])["miou"]
    """
    hits = np.diag(matrix).astype(np.float64)
    truth, predicted = matrix.sum(axis=1), matrix.sum(axis=0)
    union = truth + predicted - hits
    iou = np.divide(hits, union, out=np.zeros_like(hits), where=union > 0)
    dice = np.divide(2 * hits, truth + predicted, out=np.zeros_like(hits), where=union > 0)
    present = truth > 0
    total = matrix.sum()
    return {
        "miou": float(iou[present].mean()) if present.any() else 0.0,
        "dice": float(dice[present].mean()) if present.any() else 0.0,
        "pixel_accuracy": float(hits.sum() / total) if total else 0.0,
        "per_class": {
            name: {"iou": float(iou[k]), "dice": float(dice[k]), "pixels": int(truth[k])}
            for k, name in enumerate(names)
        },
    }


def write_confusion(
    matrix: np.ndarray, names: list[str], csv_path: Path, png_path: Path, title: str = ""
) -> None:
    """Write the matrix as CSV (counts, a header of predicted classes) and as a PNG heat map.

    The picture shows each true class's row as shares of its pixels (recall on the diagonal),
    so small classes read as clearly as large ones; each cell holds its share in percent, and
    the title the mIoU and ``title`` (the run's name).
    """
    with brinelite.atomic_write(csv_path, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["true \\ predicted", *names])
        writer.writerows([name, *map(int, row)] for name, row in zip(names, matrix, strict=True))
    from matplotlib.figure import Figure

    rows = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    side = 2.5 + 0.55 * len(names)
    figure = Figure(figsize=(side + 1, side), layout="constrained")
    axes = figure.subplots()
    shown = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (true, predicted), share in np.ndenumerate(shares):
        if matrix[true, predicted]:
            axes.text(
                predicted,
                true,
                f"{100 * share:.0f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if share > 0.5 else "black",
            )
    axes.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    axes.set_yticks(range(len(names)), names, fontsize=8)
    miou = class_scores(matrix, names)["miou"]
    heading = f"{title}\n" if title else ""
    axes.set(
        xlabel="predicted",
        ylabel="true",
        title=f"{heading}mIoU {miou:.3f}; % of each true class's pixels",
    )
    figure.colorbar(shown, ax=axes, shrink=0.8)
    with brinelite.atomic_write(png_path, "wb") as png:
        figure.savefig(png, format="png", dpi=80)
