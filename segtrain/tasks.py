"""What a dataset's masks mean, decided once: one ``MaskTask`` object per kind of mask.

Every step that differs between binary masks and a class map asks the run's task instead of
checking which kind it has: how a mask is read for training, the model's head, its loss and
metric, how the model's output becomes a mask, how it is drawn, scored against the trivial
prediction, and printed.

- ``BinaryMasks`` (no class map): a mask is its red channel if coloured, else its grey value,
  foreground from 100; one sigmoid output, bce + dice; decoded by a threshold; the baselines
  are all foreground and all background.
- ``ClassMaps`` (a class map of N >= 2 classes): pixel ids become training indices (void N);
  N softmax outputs, ``SemanticLoss`` and ``class_dice``; decoded by argmax; the baseline is
  the training fold's majority class everywhere.

``task_for`` asks each kind of ``KINDS`` in turn whether it takes a dataset's class map
(``claim``); a new kind (multi-label masks, say) is one subclass listed there. Numpy and OpenCV
only at import: the task is chosen and checked before Keras loads; ``compile`` and the binary
``score`` import segtrain.losses (and so Keras) when called.

    task = task_for(dataset.manifest.classes).weighted("sqrt")
    model = segtrain.build_model("small", 128, task=task)
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import cv2
import numpy as np

import brinelite
from segtrain.confusion import class_scores, confusion, write_confusion
from segtrain.errors import SegtrainError

# The mask and drawing helpers lived here: their names stay importable from segtrain.tasks.
from segtrain.masks import THRESHOLD, fix_mask, mask_to_gray, to_gray  # noqa: F401
from segtrain.overlays import COLORMAP, OUTLINE, outline, probability_overlay  # noqa: F401
from segtrain.semantic import class_weights

if TYPE_CHECKING:
    import keras
    from matplotlib.figure import Figure

Predicted = tuple[int, str, np.ndarray, np.ndarray]  # row id, image file, decoded output, mask


@dataclass
class Scores:
    """A fold's scores: one dict per image, the fold's summary, and the figures the kind draws.

    ``write_figures(out, fold, title)`` writes them into the folder ``out`` (``title``: the
    run's name) and returns their paths.
    """

    per_image: list[dict[str, Any]]
    summary: dict[str, Any]
    write_figures: Callable[[Path, str, str], tuple[Path, ...]] = field(
        default=lambda out, fold, title: (), repr=False
    )


class MaskTask(ABC):
    """What one kind of mask means, from reading it for training to printing its scores.

    Subclasses set ``kind`` (its name) and ``activation`` (the head's), and implement the
    abstract methods; ``KINDS`` lists them for ``task_for``.
    """

    kind: ClassVar[str]
    activation: ClassVar[str]

    @classmethod
    @abstractmethod
    def claim(cls, classes: brinelite.ClassMap | None) -> MaskTask | None:
        """This kind's task for a dataset with the class map ``classes``, or None if not its own.

        Raises:
            SegtrainError: masks of this kind it cannot train on (a class map of one class).
        """

    @property
    @abstractmethod
    def outputs(self) -> int:
        """The model's output channels."""

    def weighted(self, mode: str) -> MaskTask:
        """This task with the loss weights ``--class-weights mode`` gives (binary: none)."""
        return self

    @abstractmethod
    def record(self) -> dict[str, Any]:
        """What a run record keeps of the task: its ``classes`` and ``class_weight_values``."""

    # -- training --

    @abstractmethod
    def compile(self, model: keras.Model, lr: float, xla: bool, optimizer: str) -> keras.Model:
        """Compile ``model`` with this kind's loss and metric (named ``soft_dice``) and the
        optimizer named ``optimizer`` (``segtrain.losses.OPTIMIZERS``) at ``lr``; return it."""

    @property
    def key(self) -> str:
        """What the prepared cache's key adds for this kind (``Processor.key``)."""
        return ""

    @property
    def warp(self) -> dict[str, Any]:
        """How augmentation warps a mask (``random_shift_scale_rotate``'s mask options)."""
        return {}

    @abstractmethod
    def prepare_mask(self, mask: np.ndarray, size: int) -> np.ndarray:
        """A decoded mask (as brinelite loads it) read and resized to size x size."""

    @abstractmethod
    def finish_mask(self, mask: np.ndarray) -> np.ndarray:
        """A prepared (and maybe augmented) mask as the loss takes it: (size, size, C)."""

    # -- prediction --

    @abstractmethod
    def decode(self, output: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """The model's output for one image (S, S, C) as a map at the image's ``shape`` (HxW)."""

    @abstractmethod
    def draw(
        self, photo: np.ndarray, decoded: np.ndarray, threshold: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """(mask PNG, overlay) of one decoded map over ``photo`` (HxWx3 uint8), both uint8."""

    @abstractmethod
    def draw_truth(self, photo: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """A stored mask drawn over ``photo`` as ``draw`` draws a prediction (HxWx3 uint8)."""

    @abstractmethod
    def image_score(self, decoded: np.ndarray, mask: np.ndarray, threshold: float) -> str:
        """One image's score of a decoded prediction against its stored mask, as a label."""

    @abstractmethod
    def legend(self, figure: Figure, axes: list[Any]) -> None:
        """What a figure of this kind's overlays (a contact sheet, one overlay) shows beside."""

    # -- evaluation --

    @abstractmethod
    def check_data(self, data: brinelite.Dataset) -> None:
        """Refuse a dataset whose masks mean other things than this task's (SegtrainError)."""

    @abstractmethod
    def score(self, predicted: Iterable[Predicted], training_masks: Iterable[np.ndarray]) -> Scores:
        """Score decoded predictions against their masks, beside this kind's trivial prediction.

        ``training_masks`` are the run's training fold's masks, read only if the baseline
        needs them.
        """

    @abstractmethod
    def table(self, per_image: list[dict[str, Any]], summary: dict[str, Any]) -> list[str]:
        """The lines ``segtrain evaluate`` prints for these scores."""

    @abstractmethod
    def headline(self, summary: dict[str, Any]) -> str:
        """The model's figures of a fold's ``summary``, as ``table`` prints them, in one line
        (what ``segtrain train`` ends with)."""


def task_for(classes: brinelite.ClassMap | None) -> MaskTask:
    """The task of a dataset whose manifest has the class map ``classes`` (None: none).

    Example::

        task_for(None).kind == "binary"
    """
    for kind in KINDS:
        task = kind.claim(classes)
        if task is not None:
            return task
    raise SegtrainError("no kind of mask in segtrain.tasks.KINDS takes this dataset's masks")


# -- binary masks --


def probability_map(output: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """One sigmoid output (S, S, 1) resized bilinearly to ``shape``: HxW float32 in [0, 1]."""
    if output.shape[-1] != 1:
        raise SegtrainError(
            f"this model has {output.shape[-1]} class outputs, not one foreground probability; "
            "use segtrain.predict_classes"
        )
    return cv2.resize(output[..., 0], (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def _overlap(predicted: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Unsmoothed dice and IoU of two boolean masks, with the training metric's functions."""
    from segtrain.losses import dice, iou

    predicted, truth = predicted.astype(np.float32), truth.astype(np.float32)
    return float(dice(truth, predicted, smooth=0)), float(iou(truth, predicted, smooth=0))


def _score_lines(per_image: list[dict[str, Any]], columns: dict[str, str]) -> list[str]:
    """One line per image: its row id, the scores ``columns`` names (header: key), its file."""
    lines = [f"{'row':>6}  " + "".join(f"{header:>6}  " for header in columns) + "image"]
    for scores in per_image:
        values = "".join(f"{scores[key]:6.4f}  " for key in columns.values())
        lines.append(f"{scores['row']:>6}  {values}{scores['image']}")
    return lines


def _fold_line(summary: dict[str, Any]) -> str:
    """The line naming what was scored: dataset, fold, images."""
    return f"{summary['dataset']}, fold {summary['fold']}, {summary['images']} images:"


@dataclass(frozen=True)
class BinaryMasks(MaskTask):
    """Binary masks (a dataset without a class map): the Carvana workflow's one sigmoid output."""

    kind: ClassVar[str] = "binary"
    activation: ClassVar[str] = "sigmoid"
    BASELINES: ClassVar[tuple[str, ...]] = ("all_foreground", "all_background")

    @classmethod
    def claim(cls, classes: brinelite.ClassMap | None) -> MaskTask | None:
        """Binary masks are those of a dataset without a class map."""
        return cls() if classes is None else None

    @property
    def outputs(self) -> int:
        """One foreground probability."""
        return 1

    def record(self) -> dict[str, Any]:
        """No class map, no class weights."""
        return {"classes": None, "class_weight_values": None}

    def compile(self, model: keras.Model, lr: float, xla: bool, optimizer: str) -> keras.Model:
        """Carvana's compile: bce + dice, the soft dice metric (``compile_model``)."""
        from segtrain.losses import compile_model

        return compile_model(model, lr, xla, optimizer)

    def prepare_mask(self, mask: np.ndarray, size: int) -> np.ndarray:
        """Binarised, then resized bilinearly (its edge stays soft until ``finish_mask``)."""
        binary = fix_mask(np.asarray(mask, np.float32))
        return cv2.resize(binary, (size, size), interpolation=cv2.INTER_LINEAR)

    def finish_mask(self, mask: np.ndarray) -> np.ndarray:
        """Thresholded again (resampling blurs the edge): (size, size, 1) of 0 and 1."""
        return fix_mask(mask)[..., np.newaxis] / 255

    def decode(self, output: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """The foreground probability at the image's size (``probability_map``)."""
        return probability_map(output, shape)

    def draw(
        self, photo: np.ndarray, decoded: np.ndarray, threshold: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """A 0/255 mask (foreground from ``threshold``) and the probability over the photo."""
        mask = np.where(decoded >= threshold, 255, 0).astype(np.uint8)
        return mask, probability_overlay(photo, decoded, 0.5, threshold)

    def draw_truth(self, photo: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The mask's foreground as a prediction of probability 1 would be drawn."""
        truth = _fitted(fix_mask(mask) > 0, photo.shape).astype(np.float32)
        return probability_overlay(photo, truth, 0.5)

    def image_score(self, decoded: np.ndarray, mask: np.ndarray, threshold: float) -> str:
        """The dice of the mask ``decoded >= threshold`` (as ``segtrain evaluate`` scores)."""
        truth = fix_mask(mask) > 0
        dice, _ = _overlap(_fitted(decoded >= threshold, truth.shape), truth)
        return f"dice {dice:.2f}"

    def legend(self, figure: Figure, axes: list[Any]) -> None:
        """A colour bar of the probability."""
        import matplotlib

        scale = matplotlib.cm.ScalarMappable(matplotlib.colors.Normalize(0, 1), COLORMAP)
        figure.colorbar(scale, ax=axes, shrink=0.6, label="P(foreground)")

    def check_data(self, data: brinelite.Dataset) -> None:
        """Refuse a class map's dataset: its ids would be thresholded as a binary mask."""
        theirs = data.manifest.classes
        if theirs is not None:
            raise SegtrainError(
                f"the run trained on binary masks but {data.name}@{data.version} has a class "
                f"map of {len(theirs.classes)} classes; score it with a run trained on those "
                "classes"
            )

    def score(self, predicted: Iterable[Predicted], training_masks: Iterable[np.ndarray]) -> Scores:
        """Per-image dice and IoU (thresholded at ``THRESHOLD``, unsmoothed), beside those of
        all foreground and all background; the summary holds their means."""
        per_image = []
        for row, image, probability, mask in predicted:
            truth = fix_mask(mask) > 0
            scores: dict[str, Any] = {"row": row, "image": image}
            for suffix, guess in (
                ("", probability >= THRESHOLD),
                ("_all_foreground", np.ones_like(truth)),
                ("_all_background", np.zeros_like(truth)),
            ):
                scores["dice" + suffix], scores["iou" + suffix] = _overlap(guess, truth)
            per_image.append(scores)
        means = {
            who: {
                metric: float(np.mean([scores[metric + suffix] for scores in per_image]))
                for metric in ("dice", "iou")
            }
            for who, suffix in (("model", ""), *((name, "_" + name) for name in self.BASELINES))
        }
        return Scores(per_image, {"images": len(per_image), "threshold": THRESHOLD, **means})

    def table(self, per_image: list[dict[str, Any]], summary: dict[str, Any]) -> list[str]:
        """Per-image dice and IoU, then the means of the model and of the two trivial masks."""
        lines = [*_score_lines(per_image, {"dice": "dice", "iou": "iou"}), _fold_line(summary)]
        for who in ("model", *self.BASELINES):
            scores = summary[who]
            lines.append(f"  {who:<15} dice {scores['dice']:.4f}  iou {scores['iou']:.4f}")
        return lines

    def headline(self, summary: dict[str, Any]) -> str:
        """The model's dice and IoU, thresholded at ``THRESHOLD``, beside all foreground's."""
        model, trivial = summary["model"], summary["all_foreground"]
        return (
            f"dice {model['dice']:.4f}  iou {model['iou']:.4f} (thresholded at "
            f"{summary['threshold']}, full size; all foreground: dice {trivial['dice']:.4f})"
        )


# -- class maps --


def class_indices(output: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Each pixel's most probable class (S, S, N) -> HxW uint8, resized with nearest neighbour."""
    return class_indices_resized(np.argmax(output, axis=-1).astype(np.uint8), shape)


def class_indices_resized(indices: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A map of class indices resized to ``shape`` (HxW) with nearest neighbour: never blended."""
    return cv2.resize(indices, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)


def _fitted(labels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A label map (boolean or ids, HxW or HxWxC) resized to ``shape``'s HxW with nearest
    neighbour, if it is not that size already: a mask stored at another size than its image."""
    if labels.shape[:2] == tuple(shape[:2]):
        return labels
    resized = cv2.resize(
        labels.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST
    )
    return resized.astype(labels.dtype)


def _named_ids(classes: brinelite.ClassMap) -> dict[int, str]:
    """{pixel id: class name}: what a class map's masks mean, whatever its order or colours."""
    return {item.id: item.name for item in classes.classes}


@dataclass(frozen=True)
class ClassMaps(MaskTask):
    """A class map's masks (pixel ids named by the dataset's classes.json): N softmax outputs.

    ``weights`` are the cross-entropy's per-class weights (None: unweighted).
    """

    classes: brinelite.ClassMap
    weights: list[float] | None = None
    kind: ClassVar[str] = "classes"
    activation: ClassVar[str] = "softmax"

    @classmethod
    def claim(cls, classes: brinelite.ClassMap | None) -> MaskTask | None:
        """A dataset with a class map of at least two classes (one class is refused)."""
        if classes is None:
            return None
        if len(classes.classes) < 2:
            raise SegtrainError(
                f"the dataset's class map declares one class ({classes.names[0]}); a class map "
                "needs at least two (e.g. background and the object), or build the dataset "
                "without classes.json for a binary mask"
            )
        return cls(classes)

    @property
    def outputs(self) -> int:
        """One probability per class (void has none)."""
        return len(self.classes.classes)

    def weighted(self, mode: str) -> MaskTask:
        """With the median-frequency weights of ``mode`` (``segtrain.semantic.class_weights``)."""
        return replace(self, weights=class_weights(self.classes, mode))

    def record(self) -> dict[str, Any]:
        """The class map and the class weights trained with."""
        return {"classes": self.classes, "class_weight_values": self.weights}

    def compile(self, model: keras.Model, lr: float, xla: bool, optimizer: str) -> keras.Model:
        """``SemanticLoss`` with the class weights, ``class_dice`` named soft_dice."""
        from segtrain.losses import compile_semantic

        return compile_semantic(model, lr, xla, self.weights, optimizer)

    @property
    def key(self) -> str:
        """The class ids: the same masks read as another class map are other indices."""
        return f":ids={','.join(map(str, self.classes.ids))}"

    @property
    def warp(self) -> dict[str, Any]:
        """Nearest neighbour, void outside: a warp never blends or invents an id."""
        return {"mask_interpolation": cv2.INTER_NEAREST, "mask_border": self.classes.void_index}

    def prepare_mask(self, mask: np.ndarray, size: int) -> np.ndarray:
        """Training indices (``ClassMap.to_indices``), resized with nearest neighbour."""
        indices = self.classes.to_indices(mask)
        return cv2.resize(indices, (size, size), interpolation=cv2.INTER_NEAREST)

    def finish_mask(self, mask: np.ndarray) -> np.ndarray:
        """The label map with its channel axis: (size, size, 1) uint8 training indices."""
        return mask[..., np.newaxis]

    def decode(self, output: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """Class indices at the image's size (``class_indices``)."""
        return class_indices(output, shape)

    def draw(
        self, photo: np.ndarray, decoded: np.ndarray, threshold: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """A mask of the dataset's pixel ids and the classes' colours over the photo."""
        ids = np.array(self.classes.ids, np.uint8)[decoded]
        return ids, brinelite.class_overlay(photo, ids, self.classes)

    def draw_truth(self, photo: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The mask's classes in their colours (void left as it is)."""
        return brinelite.class_overlay(photo, _fitted(mask, photo.shape), self.classes)

    def image_score(self, decoded: np.ndarray, mask: np.ndarray, threshold: float) -> str:
        """The image's mIoU over the classes its mask holds (void left out)."""
        truth = self.classes.to_indices(mask)
        predicted = _fitted(decoded, truth.shape)
        scores = class_scores(confusion(truth, predicted, self.outputs), self.classes.names)
        return f"mIoU {scores['miou']:.2f}"

    def legend(self, figure: Figure, axes: list[Any]) -> None:
        """A legend of the class map's colours: "id name" each."""
        from matplotlib.patches import Patch

        handles = [
            Patch(color=colour / 255, label=f"{item.id} {item.name}")
            for item, colour in zip(self.classes.classes, self.classes.palette(), strict=True)
        ]
        figure.legend(handles=handles, loc="outside lower center", ncols=6, fontsize=8)

    def check_data(self, data: brinelite.Dataset) -> None:
        """Refuse binary masks, or a class map whose ids name other classes (scored anyway,
        every pixel would be void: all scores 0). Colours and ``ignore`` may differ."""
        theirs, where = data.manifest.classes, f"{data.name}@{data.version}"
        if theirs is None:
            raise SegtrainError(
                f"the run trained on a class map of {self.outputs} classes but {where} has "
                "binary masks; score it with a run trained on binary masks"
            )
        if _named_ids(self.classes) != _named_ids(theirs):
            shown = ", ".join(f"{k} {name}" for k, name in _named_ids(self.classes).items())
            raise SegtrainError(
                f"{where}'s classes are not the run's ({shown}); score the run on a dataset "
                "with its class map"
            )

    def majority(self, masks: Iterable[np.ndarray]) -> int:
        """The index of the class with most pixels in ``masks`` (void not counted)."""
        counts = np.zeros(self.classes.void_index + 1, np.int64)
        for mask in masks:
            indices = self.classes.to_indices(mask)
            counts += np.bincount(indices.ravel(), minlength=self.classes.void_index + 1)
        return int(np.argmax(counts[: self.classes.void_index]))

    def score(self, predicted: Iterable[Predicted], training_masks: Iterable[np.ndarray]) -> Scores:
        """Per-image pixel accuracy and mIoU of the model and of the training fold's majority
        class everywhere, at each mask's full size; the fold's per-class scores from its
        confusion matrix (``segtrain.confusion``), which is also drawn (CSV and PNG)."""
        majority, count, names = self.majority(training_masks), self.outputs, self.classes.names
        per_image, matrix, baseline = [], np.zeros((count, count), np.int64), 0
        for row, image, indices, mask in predicted:
            truth = self.classes.to_indices(mask)
            if indices.shape != truth.shape:  # a mask of another size than its image
                indices = class_indices_resized(indices, truth.shape)
            ours = confusion(truth, indices, count)
            theirs = confusion(truth, np.full_like(truth, majority), count)
            matrix, baseline = matrix + ours, baseline + theirs
            scores: dict[str, Any] = {"row": row, "image": image}
            for suffix, counted in (("", ours), ("_majority", theirs)):
                measured = class_scores(counted, names)
                scores["pixel_accuracy" + suffix] = measured["pixel_accuracy"]
                scores["miou" + suffix] = measured["miou"]
            per_image.append(scores)

        def means(scores: dict[str, Any]) -> dict[str, Any]:
            kept = ("dice", "miou", "pixel_accuracy", "per_class")
            return {"iou": scores["miou"], **{key: scores[key] for key in kept}}

        ours, theirs = class_scores(matrix, names), class_scores(np.asarray(baseline), names)
        summary = {
            "images": len(per_image),
            "classes": names,
            "model": means(ours),
            "majority": {"class": names[majority], **means(theirs)},
            "miou": ours["miou"],
            "pixel_accuracy": ours["pixel_accuracy"],
            "per_class": ours["per_class"],
        }
        return Scores(per_image, summary, functools.partial(self._write_confusion, matrix))

    def _write_confusion(
        self, matrix: np.ndarray, out: Path, fold: str, title: str
    ) -> tuple[Path, ...]:
        """``confusion-<fold>.csv`` and ``.png`` in ``out``, the picture titled ``title``."""
        paths = (out / f"confusion-{fold}.csv", out / f"confusion-{fold}.png")
        write_confusion(matrix, self.classes.names, *paths, title=title)
        return paths

    def table(self, per_image: list[dict[str, Any]], summary: dict[str, Any]) -> list[str]:
        """Per-image accuracy and mIoU, per-class IoU and dice, then model against majority."""
        lines = _score_lines(per_image, {"pixacc": "pixel_accuracy", "miou": "miou"})
        lines.append(f"{'class':<16} {'iou':>6}  {'dice':>6}  pixels")
        for name, scores in summary["per_class"].items():
            lines.append(
                f"{name:<16} {scores['iou']:6.4f}  {scores['dice']:6.4f}  {scores['pixels']}"
            )
        lines.append(_fold_line(summary))
        majority = summary["majority"]
        baseline = f"majority ({majority['class']})"
        for who, scores in (("model", summary["model"]), (baseline, majority)):
            lines.append(f"  {who:<20} {_class_figures(scores)}")
        return lines

    def headline(self, summary: dict[str, Any]) -> str:
        """The model's mIoU, dice and pixel accuracy (argmax, full size), beside the majority's."""
        majority = summary["majority"]
        return (
            f"{_class_figures(summary['model'])} (argmax, full size; majority class "
            f"{majority['class']}: miou {majority['miou']:.4f})"
        )


def _class_figures(scores: dict[str, Any]) -> str:
    """A class map's mean scores as ``segtrain evaluate`` prints them."""
    return (
        f"miou {scores['miou']:.4f}  dice {scores['dice']:.4f}  "
        f"pixel accuracy {scores['pixel_accuracy']:.4f}"
    )


KINDS: tuple[type[MaskTask], ...] = (BinaryMasks, ClassMaps)  # asked in order by ``task_for``
