"""Score a run on its validation fold (or any dataset): per-image scores, and baselines.

    report = segtrain.evaluate("runs/membrane")
    report.summary["model"]["dice"], report.summary["all_foreground"]["dice"]

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
(the means).
"""

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

import brinelite
from segtrain.confusion import class_scores, confusion, write_confusion
from segtrain.errors import SegtrainError
from segtrain.losses import dice, iou
from segtrain.prediction import output_folder, predict, predict_classes
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
    confusion_paths: tuple[Path, ...] = ()


def load_fold(run_dir: str | Path, dataset: str | None = None, fold: str = "val"):
    """The rows to evaluate: the run's validation fold, or every row of the dataset.

    ``dataset`` (a brinelite name or folder) defaults to the exact dataset the run trained on.
    The validation fold only exists for that dataset: its fingerprint must match.
    """
    if fold not in FOLDS:
        raise SegtrainError(f"unknown fold {fold!r}; choose one of: {', '.join(FOLDS)}")
    folder = RunFolder(Path(run_dir))
    trained_on = folder.dataset()
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


def check_classes(run: brinelite.ClassMap | None, data: brinelite.Dataset) -> None:
    """Refuse to score masks that mean other things than the run's: binary masks against a
    class map (or the reverse), or a class map whose ids name other classes.

    Scored anyway, the mismatch would give silent nonsense: class ids thresholded as a binary
    mask, or every pixel void (all scores 0). Colours and ``ignore`` may differ.
    """
    theirs, where = data.manifest.classes, f"{data.name}@{data.version}"
    if run is None and theirs is not None:
        raise SegtrainError(
            f"the run trained on binary masks but {where} has a class map of "
            f"{len(theirs.classes)} classes; score it with a run trained on those classes"
        )
    if run is not None and theirs is None:
        raise SegtrainError(
            f"the run trained on a class map of {len(run.classes)} classes but {where} has "
            "binary masks; score it with a run trained on binary masks"
        )
    if run is not None and theirs is not None and _named_ids(run) != _named_ids(theirs):
        shown = ", ".join(f"{k} {name}" for k, name in _named_ids(run).items())
        raise SegtrainError(
            f"{where}'s classes are not the run's ({shown}); score the run on a dataset with "
            "its class map"
        )


def _named_ids(classes: brinelite.ClassMap) -> dict[int, str]:
    """{pixel id: class name}: what a class map's masks mean, whatever its order or colours."""
    return {item.id: item.name for item in classes.classes}


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


def predictions(model: keras.Model, data: brinelite.Dataset, columns: tuple[str, str], predictor):
    """(row id, image file, prediction, mask) per row, predicting ``BATCH`` images at a time.

    ``predictor`` is ``predict`` or ``predict_classes``; masks are decoded as stored.
    """
    image_column, mask_column = columns
    for start in range(0, len(data), BATCH):
        positions = range(start, min(start + BATCH, len(data)))
        rows = [data[i] for i in positions]
        images = [data.load_image(getattr(row, image_column)) for row in rows]
        for position, row, predicted in zip(positions, rows, predictor(model, images), strict=True):
            mask = data.load_image(getattr(row, mask_column))
            yield int(data.indices[position]), getattr(row, image_column), predicted, mask


def score(
    model: keras.Model, data: brinelite.Dataset, image_column: str, mask_column: str
) -> list[dict[str, Any]]:
    """Predict every row of ``data`` and score it (``_score``): binary masks."""
    return [
        _score(row, image, probability, mask)
        for row, image, probability, mask in predictions(
            model, data, (image_column, mask_column), predict
        )
    ]


def majority_class(folder: RunFolder, classes: brinelite.ClassMap) -> int:
    """The index of the class with most pixels in the run's training fold (void not counted)."""
    data = brinelite.load_dataset(folder.dataset()["source"])
    _, training = folder.split(data)
    mask_column = folder.config().mask_column
    counts = np.zeros(classes.void_index + 1, np.int64)
    for row in training:
        indices = classes.to_indices(training.load_image(getattr(row, mask_column)))
        counts += np.bincount(indices.ravel(), minlength=classes.void_index + 1)
    return int(np.argmax(counts[: classes.void_index]))


def score_classes(
    model: keras.Model,
    data: brinelite.Dataset,
    columns: tuple[str, str],
    classes: brinelite.ClassMap,
    majority: int,
) -> tuple[list[dict[str, Any]], np.ndarray, np.ndarray]:
    """Per-image pixel accuracy and mIoU of the model and of ``majority`` everywhere, and the
    fold's two confusion matrices (model, majority), at each mask's full size."""
    count = classes.void_index
    per_image, model_matrix, majority_matrix = [], 0, 0
    for row, image, predicted, mask in predictions(model, data, columns, predict_classes):
        truth = classes.to_indices(mask)
        if predicted.shape != truth.shape:
            size = (truth.shape[1], truth.shape[0])
            predicted = cv2.resize(predicted, size, interpolation=cv2.INTER_NEAREST)
        ours = confusion(truth, predicted, count)
        theirs = confusion(truth, np.full_like(truth, majority), count)
        model_matrix, majority_matrix = model_matrix + ours, majority_matrix + theirs
        scores: dict[str, Any] = {"row": row, "image": image}
        for suffix, matrix in (("", ours), ("_majority", theirs)):
            measured = class_scores(matrix, classes.names)
            scores["pixel_accuracy" + suffix] = measured["pixel_accuracy"]
            scores["miou" + suffix] = measured["miou"]
        per_image.append(scores)
    return per_image, np.asarray(model_matrix), np.asarray(majority_matrix)


def summarise_classes(
    matrix: np.ndarray, majority_matrix: np.ndarray, classes: brinelite.ClassMap, majority: int
) -> dict[str, Any]:
    """The fold's class-map scores: the model's, and those of the majority class everywhere."""

    def means(scores: dict[str, Any]) -> dict[str, Any]:
        kept = ("dice", "miou", "pixel_accuracy", "per_class")
        return {"iou": scores["miou"], **{key: scores[key] for key in kept}}

    ours = class_scores(matrix, classes.names)
    theirs = class_scores(majority_matrix, classes.names)
    return {
        "classes": classes.names,
        "model": means(ours),
        "majority": {"class": classes.names[majority], **means(theirs)},
        "miou": ours["miou"],
        "pixel_accuracy": ours["pixel_accuracy"],
        "per_class": ours["per_class"],
    }


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
        ``"all_foreground"``/``"all_background"`` for the baselines; for a class map
        ``summary["miou"]``, ``"per_class"`` and ``"majority"``) and the files written
        (``confusion_paths``: the class map's confusion matrix, CSV and PNG).

    Example::

        report = segtrain.evaluate("runs/membrane")
        print(report.summary["model"]["dice"], report.summary["all_foreground"]["dice"])
    """
    folder = RunFolder(Path(run_dir))
    config, model, classes = folder.config(), folder.load_model(), folder.classes()
    data = load_fold(run_dir, dataset, fold)
    check_columns(data, config.image_column, config.mask_column)
    check_classes(classes, data)
    out = output_folder(Path(out or run_dir))
    summary: dict[str, Any] = {
        "run": str(run_dir),
        "dataset": f"{data.name}@{data.version}",
        "fold": fold,
    }
    drawn: tuple[Path, ...] = ()
    if classes is None:
        per_image = score(model, data, config.image_column, config.mask_column)
        summary |= {"images": len(per_image), "threshold": THRESHOLD, **summarise(per_image)}
    else:
        majority = majority_class(folder, classes)
        columns = (config.image_column, config.mask_column)
        per_image, matrix, baseline = score_classes(model, data, columns, classes, majority)
        summary |= {"images": len(per_image)}
        summary |= summarise_classes(matrix, baseline, classes, majority)
        drawn = (out / f"confusion-{fold}.csv", out / f"confusion-{fold}.png")
        write_confusion(matrix, classes.names, *drawn)
    csv_path, json_path = out / f"evaluation-{fold}.csv", out / f"evaluation-{fold}.json"
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(per_image[0]))
        writer.writeheader()
        writer.writerows(per_image)
    json_path.write_text(json.dumps(summary, indent=2) + "\n")
    return Evaluation(per_image, summary, csv_path, json_path, drawn)
