"""Score a run on its validation fold (or any dataset): per-image dice and IoU, and baselines.

    report = segtrain.evaluate("runs/membrane")
    report.summary["model"]["dice"], report.summary["all_foreground"]["dice"]

Predictions are thresholded at 0.5 and scored at each image's own size against its mask
(binarised as in training), with the same ``dice`` and ``iou`` as the training metric (unsmoothed
here: two empty masks score 1). Next to the model's scores stand those of the two trivial
predictions, all foreground and all background, on the same images: a model is only worth its
margin over them. Results go to ``evaluation-<fold>.csv`` (one line per image) and
``evaluation-<fold>.json`` (the means).
"""

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import brinelite
from segtrain.errors import SegtrainError
from segtrain.losses import dice, iou
from segtrain.prediction import predict
from segtrain.processing import fix_mask
from segtrain.run_folder import RunFolder
from segtrain.runtime import import_keras
from segtrain.training import check_columns

keras = import_keras()

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


def load_fold(run_dir: str | Path, dataset: str | None = None, fold: str = "val"):
    """The rows to evaluate: the run's validation fold, or every row of the dataset.

    ``dataset`` (a brinelite name or folder) defaults to the exact dataset the run trained on.
    The validation fold only exists for that dataset: its fingerprint must match.
    """
    if fold not in FOLDS:
        raise SegtrainError(f"unknown fold {fold!r}; choose one of: {', '.join(FOLDS)}")
    folder = RunFolder(Path(run_dir))
    trained_on = folder.record()["dataset"]
    data = brinelite.load_dataset(dataset or trained_on["source"])
    if fold == "all":
        return data
    if data.manifest.fingerprint != trained_on["fingerprint"]:
        raise SegtrainError(
            f"{data.name}@{data.version} is not the dataset {run_dir} was trained on "
            f"({trained_on['ref']}), so the run's validation fold does not apply; use --fold all"
        )
    validation, _ = folder.split(data)
    return validation


def _scores(predicted: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Unsmoothed dice and IoU of two boolean masks."""
    predicted, truth = predicted.astype(np.float32), truth.astype(np.float32)
    return float(dice(truth, predicted, smooth=0)), float(iou(truth, predicted, smooth=0))


def _score(row: int, image: str, probability: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
    """The scores of one image: the model's, and those of the two trivial predictions."""
    truth = fix_mask(mask) > 0
    scores: dict[str, Any] = {"row": row, "image": image}
    for suffix, predicted in (
        ("", probability >= THRESHOLD),
        ("_all_foreground", np.ones_like(truth)),
        ("_all_background", np.zeros_like(truth)),
    ):
        scores["dice" + suffix], scores["iou" + suffix] = _scores(predicted, truth)
    return scores


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

    See the module docstring for what is measured.

    Args:
        run_dir: a folder written by ``segtrain.train``.
        dataset: a brinelite name or folder to score on (default: the run's own dataset).
        fold: "val" (the run's validation rows; the run's own dataset only) or "all".
        out: the folder for ``evaluation-<fold>.csv`` and ``.json`` (default: ``run_dir``).

    Returns:
        An ``Evaluation``: per-image scores, their means (``summary["model"]["dice"]``, and
        ``"all_foreground"``/``"all_background"`` for the baselines) and the files written.

    Example::

        report = segtrain.evaluate("runs/membrane")
        print(report.summary["model"]["dice"], report.summary["all_foreground"]["dice"])
    """
    folder = RunFolder(Path(run_dir))
    config, model = folder.config(), folder.load_model()
    data = load_fold(run_dir, dataset, fold)
    check_columns(data, config.image_column, config.mask_column)
    per_image = score(model, data, config.image_column, config.mask_column)
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
