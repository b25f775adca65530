"""Apply a trained U-Net to photos: probability maps or class maps, masks and overlays.

    model = segtrain.load_model("runs/membrane")
    probabilities = segtrain.predict(model, images)  # one HxW map in [0, 1] per image
    indices = segtrain.predict_classes(model, images)  # a class map's model: HxW class indices

``predict_files`` (the ``segtrain predict`` command) writes, per image, ``<stem>.mask.png`` and
``<stem>.overlay.png`` at the image's own size, plus ``contact_sheet.png`` with up to 16
overlays, drawn by the run's ``segtrain.tasks.MaskTask``. Binary: the mask is 0 or 255 and
the overlay the predicted mask over the photo, outlined and coloured by confidence (the more
yellow, the more confident). Class map: the mask holds the dataset's 8-bit pixel ids and the
overlay colours each class by its palette. Each overlay and the sheet have a colour bar or a
legend; on the run's validation images the sheet shows each true mask beside its prediction.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from matplotlib.figure import Figure

from brinelite import IMAGE_SUFFIXES, atomic_write, read_image
from segtrain.errors import SegtrainError
from segtrain.overlays import probability_overlay
from segtrain.processing import prepare_image, to_rgb
from segtrain.tasks import BinaryMasks, MaskTask, class_indices, probability_map

if TYPE_CHECKING:
    import keras

SHEET = "contact_sheet.png"
SHEET_IMAGES = 16
CHUNK = 32  # images decoded and predicted at a time
NAME_CHARS = 28  # a file name in a tile's title, shortened in the middle beyond this
OVERLAY_DPI = 100  # one overlay's figure: the image near its own size,
OVERLAY_MIN_WIDTH = 400  # or this many pixels wide if it is smaller


def predict(
    model: keras.Model, images: Sequence[np.ndarray], batch_size: int = 8
) -> list[np.ndarray]:
    """One foreground-probability map per image: HxW float32 in [0, 1] at the image's own size.

    Each image (as ``brinelite.read_image`` decodes it: HxWxC or HxW, any size) is prepared as
    for validation (``prepare_image``: first 3 channels, resized to the model's input, /255);
    the output is resized back.

    Args:
        model: a model from ``segtrain.load_model`` (or any with one sigmoid output channel).
        images: decoded images, e.g. ``[brinelite.read_image(path) for path in paths]``.
        batch_size: images per forward pass.

    Returns:
        One probability map per image, in order.

    Example::

        model = segtrain.load_model("runs/membrane")
        maps = segtrain.predict(model, [brinelite.read_image("cell.png")])
        mask = maps[0] >= 0.5
    """
    return _decoded(model, images, batch_size, probability_map)


def predict_classes(
    model: keras.Model, images: Sequence[np.ndarray], batch_size: int = 8
) -> list[np.ndarray]:
    """One map of class indices per image (HxW uint8, 0..N-1) at the image's own size.

    For a model trained on a class map: each pixel gets its most probable class (the class
    map's order, ``ClassMap.names``); the map is resized back with nearest neighbour, so it
    only ever holds class indices. ``ClassMap.ids`` turns them into the dataset's pixel ids.

    Args:
        model: a model from ``segtrain.load_model`` with one softmax output per class.
        images: decoded images, as for ``predict``.
        batch_size: images per forward pass.

    Returns:
        One index map per image, in order.

    Example::

        indices = segtrain.predict_classes(model, [brinelite.read_image("street.png")])[0]
        ids = np.array(classes.ids, np.uint8)[indices]
    """
    return _decoded(model, images, batch_size, class_indices)


def predict_maps(
    model: keras.Model, images: Sequence[np.ndarray], task: MaskTask, batch_size: int = 8
) -> list[np.ndarray]:
    """One map per image at its own size, decoded as ``task`` decodes: ``predict`` for binary
    masks, ``predict_classes`` for a class map (``segtrain.tasks``).

    Example::

        maps = predict_maps(model, images, RunFolder(Path("runs/camvid")).record().task)
    """
    return _decoded(model, images, batch_size, task.decode)


def _decoded(
    model: keras.Model,
    images: Sequence[np.ndarray],
    batch_size: int,
    decode: Callable[[np.ndarray, tuple[int, ...]], np.ndarray],
) -> list[np.ndarray]:
    """The model's output for each image, ``decode``d at the image's shape."""
    outputs = _forward(model, images, batch_size)
    return [decode(output, image.shape) for output, image in zip(outputs, images, strict=True)]


def _forward(model: keras.Model, images: Sequence[np.ndarray], batch_size: int) -> np.ndarray:
    """The model's float32 outputs for ``images`` prepared as for validation (N, S, S, C)."""
    if len(images) == 0:
        return np.zeros((0, 1, 1, model.output_shape[-1]), np.float32)
    size = model.input_shape[1]
    batch = np.stack([prepare_image(image, size) for image in images])
    return model.predict(batch, batch_size=batch_size, verbose=0).astype(np.float32)


def image_files(inputs: Sequence[str | Path]) -> list[Path]:
    """The image files named by ``inputs``: files as given, folders' images (not recursive)."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif item.is_file():
            files.append(item)
        else:
            raise SegtrainError(f"no such image file or folder: {item}")
    if not files:
        where = ", ".join(map(str, inputs))
        raise SegtrainError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {where}")
    stems = [path.stem for path in files]
    if len(set(stems)) < len(stems):
        twice = sorted({stem for stem in stems if stems.count(stem) > 1})
        raise SegtrainError(f"several images are named {', '.join(twice)}: outputs would clash")
    return files


def overlay(
    image: np.ndarray, probability: np.ndarray, alpha: float = 0.5, threshold: float = 0.5
) -> np.ndarray:
    """The photo with the predicted mask (probability >= ``threshold``) outlined and filled
    with the colour-mapped probability (yellow = confident); elsewhere the photo is left as it
    is. HxWx3 uint8.

    ``image`` is a decoded image (any channels); it is shown in the model's channels
    (``to_rgb``), clipped to 0-255.
    """
    return probability_overlay(_photo(image), probability, alpha, threshold)


def _photo(image: np.ndarray) -> np.ndarray:
    """A decoded image in the model's channels (``to_rgb``) as 8-bit RGB, clipped to 0-255."""
    return np.clip(to_rgb(image), 0, 255).astype(np.uint8)


@dataclass
class Tile:
    """One image of a contact sheet: its name, the prediction drawn over it, and, when the
    image has a mask, the mask drawn the same way and the image's score (``image_score``)."""

    name: str
    predicted: np.ndarray
    truth: np.ndarray | None = None
    score: str | None = None


def shortened(name: str, most: int = NAME_CHARS) -> str:
    """``name`` cut in the middle to at most ``most`` characters, both ends kept.

    Example::

        shortened("2021-03-04_patient-0042_colonoscopy_frame-000117.png", 24)
        # '2021-03-04_…e-000117.png'
    """
    if len(name) <= most:
        return name
    head = (most - 1) // 2
    return f"{name[:head]}…{name[len(name) - (most - 1 - head) :]}"


def sheet_grid(count: int, most_columns: int = 4) -> tuple[int, int]:
    """(rows, columns) of a grid for ``count`` tiles: few empty cells, near square, wide on a
    tie (6 tiles: 2 x 3, never 2 x 4 with two empty; 16: 4 x 4; 3: 1 x 3).

    Example::

        sheet_grid(6)  # (2, 3)
    """
    count = max(count, 1)

    def fit(columns: int) -> tuple[float, int]:
        rows = -(-count // columns)
        return rows * columns - count + abs(rows - columns) / 2, -columns

    columns = min(range(1, min(most_columns, count) + 1), key=fit)
    return -(-count // columns), columns


def contact_sheet(
    tiles: Sequence[Tile | tuple[str, np.ndarray]],
    out: Path,
    task: MaskTask | None = None,
    title: str = "",
) -> Path:
    """A PNG grid of overlays and the ``task``'s legend (default binary: a colour bar of the
    probability; a class map's colours); returns ``out``.

    A tile with a mask shows the mask beside the prediction, and its score in the title;
    names are shortened in the middle. The grid fits the count (``sheet_grid``).
    """
    tiles = [tile if isinstance(tile, Tile) else Tile(*tile) for tile in tiles]
    paired = any(tile.truth is not None for tile in tiles)
    per_tile = 2 if paired else 1
    rows, columns = sheet_grid(len(tiles), 4 if paired else 5)
    figure = Figure(figsize=(2.3 * columns * per_tile + 1, 2.5 * rows + 0.6), layout="constrained")
    axes = figure.subplots(rows, columns * per_tile, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for k, tile in enumerate(tiles):
        row, column = divmod(k, columns)
        scored = ", ".join(filter(None, ["prediction" if paired else "", tile.score]))
        panels = [(tile.truth, "truth"), (tile.predicted, scored)] if paired else []
        for offset, (image, label) in enumerate(panels or [(tile.predicted, scored)]):
            ax = axes[row, column * per_tile + offset]
            ax.imshow(image)
            name = shortened(tile.name) if offset == 0 else ""
            ax.set_title("\n".join(filter(None, [name, label])) or " ", fontsize=8, loc="left")
    (task or BinaryMasks()).legend(figure, axes.ravel().tolist())
    if title:
        figure.suptitle(title, fontsize=10)
    with atomic_write(out, "wb") as png:
        figure.savefig(png, format="png", dpi=72)
    return out


def overlay_figure(image: np.ndarray, out: Path, task: MaskTask, title: str = "") -> Path:
    """One overlay as a PNG near its own size, with the ``task``'s colour bar or legend."""
    height, width = image.shape[:2]
    scale = max(1.0, OVERLAY_MIN_WIDTH / width)  # a small image is shown larger
    inches = scale * width / OVERLAY_DPI + 1.4, scale * height / OVERLAY_DPI + 0.4
    figure = Figure(figsize=inches, layout="constrained")
    ax = figure.subplots()
    ax.imshow(image, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(shortened(title, 60), fontsize=8)
    task.legend(figure, [ax])
    with atomic_write(out, "wb") as png:
        figure.savefig(png, format="png", dpi=OVERLAY_DPI)
    return out


def output_folder(path: Path) -> Path:
    """``path``, created if need be, for the files a command writes; a SegtrainError if it
    cannot be (a file of that name, no permission).

    Example::

        out = output_folder(Path("predictions"))
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SegtrainError(
            f"cannot write into {path}: {exc.strerror or exc}; choose another --out"
        ) from exc
    return path


def output_files(image: Path, out: Path) -> tuple[Path, Path]:
    """The mask and overlay ``predict_files`` writes for ``image`` into ``out``."""
    return out / f"{image.stem}.mask.png", out / f"{image.stem}.overlay.png"


def check_outputs(files: Sequence[Path], out: Path, force: bool = False) -> None:
    """Refuse to overwrite what predicting ``files`` into ``out`` would write, unless ``force``.

    A hand-made ``scan.mask.png`` or ``contact_sheet.png`` in the folder is kept; ``brinelite
    build`` refuses an existing --out the same way.

    Raises:
        SegtrainError: one of those files (or links) is there and ``force`` is off.

    Example::

        check_outputs(image_files(["photos/"]), Path("predictions"))
    """
    written = [path for image in files for path in output_files(image, out)] + [out / SHEET]
    taken = [path for path in written if os.path.lexists(path)]
    if taken and not force:
        more = f" (and {len(taken) - 1} more)" if len(taken) > 1 else ""
        raise SegtrainError(
            f"{taken[0]} already exists{more}; choose another --out or pass --force to overwrite it"
        )


def _write_png(path: Path, rgb_or_grey: np.ndarray) -> None:
    """Write an RGB or grey uint8 array as PNG; fail clearly if the folder is not writable."""
    array = rgb_or_grey if rgb_or_grey.ndim == 2 else cv2.cvtColor(rgb_or_grey, cv2.COLOR_RGB2BGR)
    encoded, data = cv2.imencode(".png", array)
    if not encoded:
        raise SegtrainError(f"cannot encode {path.name} as PNG")
    try:
        with atomic_write(path, "wb") as out:
            out.write(data.tobytes())
    except OSError as exc:
        raise SegtrainError(f"cannot write {path} ({exc.strerror or exc})") from exc


def predict_files(
    model: keras.Model,
    files: Sequence[Path],
    out: str | Path,
    threshold: float = 0.5,
    batch_size: int = 8,
    task: MaskTask | None = None,
    force: bool = False,
    masks: Sequence[Path] | None = None,
    title: str = "",
) -> Path:
    """Predict every file, write its mask and overlay into ``out`` and a contact sheet; return it.

    Files already in ``out`` under those names are refused unless ``force`` (``check_outputs``).
    Nothing lands in ``out`` until every file is predicted: the outputs are written into a
    hidden folder inside it and moved into place at the end, so a failure (an image that does
    not decode) leaves ``out`` as it was.

    The run's ``task`` (default ``BinaryMasks``) draws them: binary, pixels with probability
    >= ``threshold`` are foreground (255) in the mask; class map, the mask holds each pixel's
    predicted class id (``ClassMap.ids``, 8-bit) and ``threshold`` is unused. Each overlay has
    the task's colour bar or legend. ``masks`` (one per file, e.g. the run's validation fold)
    put each mask beside its prediction on the sheet, with the image's score in its title;
    ``title`` heads the sheet. Files are decoded with ``brinelite.read_image``, as in training,
    ``CHUNK`` at a time, so a folder of any size fits in memory.

    Example::

        folder = RunFolder(Path("runs/camvid"))
        predict_files(folder.load_model(), files, "predictions", task=folder.record().task)
    """
    task = task or BinaryMasks()
    check_outputs(files, Path(out), force)
    made = not Path(out).exists()
    out = output_folder(Path(out))
    staging = Path(tempfile.mkdtemp(prefix=".predict-", dir=out))
    try:
        tiles = _predict_into(model, files, staging, threshold, batch_size, task, masks)
        contact_sheet(tiles, staging / SHEET, task=task, title=title)
        for written in sorted(staging.iterdir()):
            os.replace(written, out / written.name)
    except BaseException:
        if made:
            shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out / SHEET


def _predict_into(
    model: keras.Model,
    files: Sequence[Path],
    out: Path,
    threshold: float,
    batch_size: int,
    task: MaskTask,
    masks: Sequence[Path] | None,
) -> list[Tile]:
    """``predict_files``' work: masks and overlays written into ``out``; the sheet's tiles."""
    tiles: list[Tile] = []
    for start in range(0, len(files), CHUNK):
        chunk = files[start : start + CHUNK]
        images = [read_image(path) for path in chunk]
        decoded = predict_maps(model, images, task, batch_size)
        for k, (path, image, predicted) in enumerate(zip(chunk, images, decoded, strict=True)):
            photo = _photo(image)
            mask, blended = task.draw(photo, predicted, threshold)
            mask_file, overlay_file = output_files(path, out)
            _write_png(mask_file, mask)
            overlay_figure(blended, overlay_file, task, path.name)
            if len(tiles) < SHEET_IMAGES:
                tile = Tile(path.name, blended)
                if masks is not None:
                    truth = read_image(masks[start + k])
                    tile.truth = task.draw_truth(photo, truth)
                    tile.score = task.image_score(predicted, truth, threshold)
                tiles.append(tile)
    return tiles
