"""Score a run on its validation fold (or any dataset): per-image dice and IoU, and baselines.

    report = segtrain.evaluate("runs/membrane")
    report.summary["model"]["dice"], report.summary["all_foreground"]["dice"]

Predictions are thresholded at 0.5 and scored at each image's own size against its mask
(binarised as in training). Next to the model's scores stand those of the two trivial
predictions, all foreground and all background, on the same images: a model is only worth its
margin over them. Results go to ``evaluation-<fold>.csv`` (one line per image) and
``evaluation-<fold>.json`` (the means).
"""

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

import brinelite
from segtrain.errors import SegtrainError
from segtrain.predict import predict
from segtrain.processing import fix_mask
from segtrain.train import check_columns, load_model, read_config, saved_split

FOLDS = ("val", "all")
THRESHOLD = 0.5
BATCH = 8


@dataclass
class Evaluation:
    """Per-image scores, their means, and the files they were written to."""

    per_image: list[dict[str, Any]]
    summary: dict[str, Any]
    csv_path: Path
    json_path: Path


def dice(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Dice 2|P∩T| / (|P| + |T|) of two boolean masks; 1 when both are empty."""
    total = predicted.sum() + truth.sum()
    return 1.0 if total == 0 else float(2 * np.logical_and(predicted, truth).sum() / total)


def iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union |P∩T| / |P∪T| of two boolean masks; 1 when both are empty."""
    union = np.logical_or(predicted, truth).sum()
    return 1.0 if union == 0 else float(np.logical_and(predicted, truth).sum() / union)


def load_fold(run_dir: str | Path, dataset: str | None = None, fold: str = "val"):
    """The rows to evaluate: the run's validation fold, or every row of the dataset.

    ``dataset`` (a brinelite name or folder) defaults to the exact dataset the run trained on.
    The validation fold only exists for that dataset: its fingerprint must match.
    """
    if fold not in FOLDS:
        raise SegtrainError(f"unknown fold {fold!r}; choose one of: {', '.join(FOLDS)}")
    trained_on = read_config(run_dir)["dataset"]
    data = brinelite.load_dataset(dataset or trained_on["source"])
    if fold == "all":
        return data
    if data.manifest.fingerprint != trained_on["fingerprint"]:
        raise SegtrainError(
            f"{data.name}@{data.version} is not the dataset {run_dir} was trained on "
            f"({trained_on['ref']}), so the run's validation fold does not apply; use --fold all"
        )
    validation, _ = saved_split(data, Path(run_dir))
    return validation


def _score(row: int, image: str, probability: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
    """The scores of one image: the model's, and those of the two trivial predictions."""
    truth = fix_mask(mask) > 0
    predicted = probability >= THRESHOLD
    everything, nothing = np.ones_like(truth), np.zeros_like(truth)
    return {
        "row": row,
        "image": image,
        "dice": dice(predicted, truth),
        "iou": iou(predicted, truth),
        "dice_all_foreground": dice(everything, truth),
        "iou_all_foreground": iou(everything, truth),
        "dice_all_background": dice(nothing, truth),
        "iou_all_background": iou(nothing, truth),
    }


def score(
    model: keras.Model, data: brinelite.Dataset, image_column: str, mask_column: str
) -> list[dict[str, Any]]:
    """Predict every row of ``data`` (``BATCH`` images at a time) and score it (``_score``)."""
    per_image = []
    for start in range(0, len(data), BATCH):
        positions = range(start, min(start + BATCH, len(data)))
        rows = [data[i] for i in positions]
        images = [data.load_image(getattr(row, image_column)) for row in rows]
        for position, row, probability in zip(positions, rows, predict(model, images), strict=True):
            mask = data.load_image(getattr(row, mask_column))
            row_id = int(data.indices[position])
            per_image.append(_score(row_id, getattr(row, image_column), probability, mask))
    return per_image


def summarise(per_image: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean dice and IoU of the model and of the two trivial predictions."""
    return {
        who: {
            metric: float(np.mean([scores[metric + suffix] for scores in per_image]))
            for metric in ("dice", "iou")
        }
        for who, suffix in (
            ("model", ""),
            ("all_foreground", "_all_foreground"),
            ("all_background", "_all_background"),
        )
    }


def evaluate(
    run_dir: str | Path,
    dataset: str | None = None,
    fold: str = "val",
    out: str | Path | None = None,
) -> Evaluation:
    """Score the run's best weights on ``fold`` of ``dataset``; write CSV and JSON into ``out``.

    ``out`` defaults to the run folder. See the module docstring for what is measured.
    """
    config = read_config(run_dir)
    model = load_model(run_dir)
    data = load_fold(run_dir, dataset, fold)
    check_columns(data, config["image_column"], config["mask_column"])
    per_image = score(model, data, config["image_column"], config["mask_column"])
    summary = {
        "run": str(run_dir),
        "dataset": f"{data.name}@{data.version}",
        "fold": fold,
        "images": len(per_image),
        "threshold": THRESHOLD,
        **summarise(per_image),
    }
    out = Path(out or run_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out / f"evaluation-{fold}.csv", out / f"evaluation-{fold}.json"
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(per_image[0]))
        writer.writeheader()
        writer.writerows(per_image)
    json_path.write_text(json.dumps(summary, indent=2) + "\n")
    return Evaluation(per_image, summary, csv_path, json_path)
