"""Score a run on its validation fold (or any dataset): per-image scores, and baselines.

    report = segtrain.evaluate("runs/membrane")
    report.summary["model"]["dice"], report.summary["all_foreground"]["dice"]

What is scored, against which trivial prediction, is the run's ``segtrain.tasks.MaskTask``:

Binary masks: predictions are thresholded at 0.5 and scored at each image's own size against
its mask (binarised as in training), with the same ``dice`` and ``iou`` as the training metric
(unsmoothed here: two empty masks score 1). Next to the model's scores stand those of the two
trivial predictions, all foreground and all background, on the same images: a model is only
worth its margin over them.

Class maps: each pixel's most probable class, resized back to the mask's full size with
nearest neighbour, is scored against the mask's classes, void pixels left out
(``segtrain.confusion``): per-class IoU and dice, mIoU and mean dice over the classes present,
pixel accuracy, and the fold's confusion matrix (``confusion-<fold>.csv`` and ``.png``). The
trivial prediction beside it is the training fold's majority class everywhere (``majority``).
``model`` then holds ``dice`` (mean over classes), ``iou`` (= ``miou``), ``miou`` and
``pixel_accuracy``, and ``miou``, ``pixel_accuracy``, ``per_class`` are also top-level keys.

Results go to ``evaluation-<fold>.csv`` (one line per image) and ``evaluation-<fold>.json``
(the means). The run folder, the dataset and its masks are checked before Keras loads.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import brinelite
from segtrain.datasets import check_columns, open_dataset
from segtrain.errors import SegtrainError
from segtrain.prediction import output_folder, predict_maps
from segtrain.records import RunRecord
from segtrain.run_folder import RunFolder
from segtrain.tasks import MaskTask, Predicted, Scores

if TYPE_CHECKING:
    import keras

FOLDS = ("val", "all")
BATCH = 8


@dataclass
class Evaluation:
    """Per-image scores, their means, the files they were written to, and the run's task."""

    per_image: list[dict[str, Any]]
    summary: dict[str, Any]
    csv_path: Path
    json_path: Path
    task: MaskTask
    confusion_paths: tuple[Path, ...] = ()

    def table(self) -> list[str]:
        """The lines ``segtrain evaluate`` prints: per image, then the fold's scores."""
        return self.task.table(self.per_image, self.summary)


def load_fold(
    folder: RunFolder, record: RunRecord, dataset: str | None = None, fold: str = "val"
) -> brinelite.Dataset:
    """The rows to evaluate: the run's validation fold, or every row of the dataset.

    ``dataset`` (a brinelite name or folder) defaults to the exact dataset the run trained on
    (``record``, the folder's config.json). The validation fold only exists for that dataset:
    its fingerprint must match.
    """
    if fold not in FOLDS:
        raise SegtrainError(f"unknown fold {fold!r}; choose one of: {', '.join(FOLDS)}")
    data = open_dataset(dataset or record.dataset.source)
    if fold == "all":
        return data
    if data.manifest.fingerprint != record.dataset.fingerprint:
        raise SegtrainError(
            f"{data.name}@{data.version} is not the dataset {folder.path} was trained on "
            f"({record.dataset.ref}), so the run's validation fold does not apply; use --fold all"
        )
    validation, _ = folder.split(data)
    return validation


def training_masks(folder: RunFolder, record: RunRecord) -> Iterator[np.ndarray]:
    """The masks of the run's training fold, decoded one by one (read only if iterated)."""
    data = open_dataset(record.dataset.source)
    _, training = folder.split(data)
    for row in training:
        yield training.load_image(getattr(row, record.config.mask_column))


def predictions(
    model: keras.Model, data: brinelite.Dataset, columns: tuple[str, str], task: MaskTask
) -> Iterator[Predicted]:
    """(row id, image file, decoded prediction, mask) per row, ``BATCH`` images at a time.

    Predictions are decoded by ``task`` (``predict_maps``); masks are decoded as stored.
    """
    image_column, mask_column = columns
    for start in range(0, len(data), BATCH):
        positions = range(start, min(start + BATCH, len(data)))
        rows = [data[i] for i in positions]
        images = [data.load_image(getattr(row, image_column)) for row in rows]
        decoded = predict_maps(model, images, task)
        for position, row, predicted in zip(positions, rows, decoded, strict=True):
            mask = data.load_image(getattr(row, mask_column))
            yield int(data.indices[position]), getattr(row, image_column), predicted, mask


def score_fold(
    model: keras.Model,
    data: brinelite.Dataset,
    task: MaskTask,
    columns: tuple[str, str] = ("image", "mask"),
    training: Iterable[np.ndarray] = (),
) -> Scores:
    """Predict every row of ``data`` and score it as ``task`` does.

    ``training`` are the masks the task's baseline may learn from (a class map's majority).

    Example::

        summary = score_fold(model, validation, BinaryMasks()).summary
    """
    return task.score(predictions(model, data, columns, task), training)


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
        ``"all_foreground"``/``"all_background"`` for the baselines; for a class map
        ``summary["miou"]``, ``"per_class"`` and ``"majority"``) and the files written
        (``confusion_paths``: the class map's confusion matrix, CSV and PNG).

    Example::

        report = segtrain.evaluate("runs/membrane")
        print(report.summary["model"]["dice"], report.summary["all_foreground"]["dice"])
    """
    folder = RunFolder(Path(run_dir))
    record = folder.trained()
    config, task = record.config, record.task
    data = load_fold(folder, record, dataset, fold)
    check_columns(data, config.image_column, config.mask_column)
    task.check_data(data)
    model = folder.load_model(record)  # Keras loads here, after the checks
    out = output_folder(Path(out or run_dir))
    columns = (config.image_column, config.mask_column)
    scores = score_fold(model, data, task, columns, training_masks(folder, record))
    summary = {"run": str(run_dir), "dataset": f"{data.name}@{data.version}", "fold": fold}
    summary |= scores.summary
    drawn = scores.write_figures(out, fold, f"{folder.title()}, fold {fold}")
    csv_path, json_path = out / f"evaluation-{fold}.csv", out / f"evaluation-{fold}.json"
    with brinelite.atomic_write(csv_path, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(scores.per_image[0]))
        writer.writeheader()
        writer.writerows(scores.per_image)
    brinelite.write_text(json_path, json.dumps(summary, indent=2) + "\n")
    return Evaluation(scores.per_image, summary, csv_path, json_path, task, drawn)
