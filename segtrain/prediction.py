"""Apply a trained U-Net to photos: probability maps or class maps, masks and overlays.

    model = segtrain.load_model("runs/membrane")
    probabilities = segtrain.predict(model, images)  # one HxW map in [0, 1] per image
    indices = segtrain.predict_classes(model, images)  # a class map's model: HxW class indices

``predict_files`` (the ``segtrain predict`` command) writes, per image, ``<stem>.mask.png`` and
``<stem>.overlay.png`` at the image's own size, plus ``contact_sheet.png`` with up to 16
overlays. Binary: the mask is 0 or 255 and the overlay the predicted confidence over the photo
(the more yellow, the more confident, as in the seed). Class map: the mask holds the dataset's
8-bit pixel ids and the overlay colours each class by its palette, with a legend on the sheet.
"""

from collections.abc import Sequence
from pathlib import Path

import cv2
import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from brinelite import IMAGE_SUFFIXES, ClassMap, class_overlay, read_image
from segtrain.errors import SegtrainError
from segtrain.processing import prepare_image, to_rgb
from segtrain.runtime import import_keras

keras = import_keras()
COLORMAP = "viridis"  # dark purple for 0, yellow for 1
SHEET = "contact_sheet.png"
SHEET_IMAGES = 16
CHUNK = 32  # images decoded and predicted at a time


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
    outputs = _forward(model, images, batch_size)
    if outputs.shape[-1] != 1:
        raise SegtrainError(
            f"this model has {outputs.shape[-1]} class outputs, not one foreground probability; "
            "use segtrain.predict_classes"
        )
    return [
        cv2.resize(output[..., 0], (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
        for output, image in zip(outputs, images, strict=True)
    ]


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
    outputs = _forward(model, images, batch_size)
    return [
        cv2.resize(
            np.argmax(output, axis=-1).astype(np.uint8),
            (image.shape[1], image.shape[0]),
            interpolation=cv2.INTER_NEAREST,
        )
        for output, image in zip(outputs, images, strict=True)
    ]


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


def overlay(image: np.ndarray, probability: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The photo blended with the colour-mapped probability: yellow = confident; HxWx3 uint8.

    ``image`` is a decoded image (any channels); it is shown in the model's channels
    (``to_rgb``), clipped to 0-255.
    """
    photo = _photo(image)
    colours = matplotlib.colormaps[COLORMAP](probability)[..., :3] * 255
    return np.rint(photo * (1 - alpha) + colours * alpha).astype(np.uint8)


def _photo(image: np.ndarray) -> np.ndarray:
    """A decoded image in the model's channels (``to_rgb``) as 8-bit RGB, clipped to 0-255."""
    return np.clip(to_rgb(image), 0, 255).astype(np.uint8)


def contact_sheet(
    overlays: Sequence[tuple[str, np.ndarray]],
    out: Path,
    columns: int = 4,
    classes: ClassMap | None = None,
) -> Path:
    """A PNG grid of (title, overlay) tiles: one colour bar for the probability (binary), or a
    legend of the class map's colours (``classes``)."""
    columns = min(columns, len(overlays))
    rows = -(-len(overlays) // columns)
    figure = Figure(figsize=(2.2 * columns + 0.6, 2.3 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, (title, image) in zip(axes, overlays, strict=False):
        ax.imshow(image)
        ax.set_title(title, fontsize=9)
    if classes is None:
        scale = matplotlib.cm.ScalarMappable(matplotlib.colors.Normalize(0, 1), COLORMAP)
        figure.colorbar(scale, ax=axes.tolist(), shrink=0.6, label="P(foreground)")
    else:
        handles = [
            Patch(color=colour / 255, label=f"{item.id} {item.name}")
            for item, colour in zip(classes.classes, classes.palette(), strict=True)
        ]
        figure.legend(handles=handles, loc="outside lower center", ncols=6, fontsize=8)
    figure.savefig(out, dpi=72)
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


def _write_png(path: Path, rgb_or_grey: np.ndarray) -> None:
    """Write an RGB or grey uint8 array as PNG; fail clearly if the folder is not writable."""
    array = rgb_or_grey if rgb_or_grey.ndim == 2 else cv2.cvtColor(rgb_or_grey, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), array):
        raise SegtrainError(f"cannot write {path}")


def predict_files(
    model: keras.Model,
    files: Sequence[Path],
    out: str | Path,
    threshold: float = 0.5,
    batch_size: int = 8,
    classes: ClassMap | None = None,
) -> Path:
    """Predict every file, write its mask and overlay into ``out`` and a contact sheet; return it.

    Binary (``classes`` None): pixels with probability >= ``threshold`` are foreground (255) in
    the mask. Class map: the mask holds each pixel's predicted class id (``classes.ids``, 8-bit)
    and ``threshold`` is unused. Files are decoded with ``brinelite.read_image``, as in
    training, ``CHUNK`` at a time, so a folder of any size fits in memory.

    Example::

        folder = RunFolder(Path("runs/camvid"))
        predict_files(folder.load_model(), files, "predictions", classes=folder.classes())
    """
    out = output_folder(Path(out))
    sheet: list[tuple[str, np.ndarray]] = []
    for start in range(0, len(files), CHUNK):
        chunk = files[start : start + CHUNK]
        images = [read_image(path) for path in chunk]
        drawn = _drawn(model, images, threshold, batch_size, classes)
        for path, (mask, blended) in zip(chunk, drawn, strict=True):
            _write_png(out / f"{path.stem}.mask.png", mask)
            _write_png(out / f"{path.stem}.overlay.png", blended)
            if len(sheet) < SHEET_IMAGES:
                sheet.append((path.name, blended))
    return contact_sheet(sheet, out / SHEET, classes=classes)


def _drawn(
    model: keras.Model,
    images: list[np.ndarray],
    threshold: float,
    batch_size: int,
    classes: ClassMap | None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(mask, overlay) per image, both uint8 at the image's size (see ``predict_files``)."""
    if classes is None:
        return [
            (
                np.where(probability >= threshold, 255, 0).astype(np.uint8),
                overlay(image, probability),
            )
            for image, probability in zip(images, predict(model, images, batch_size), strict=True)
        ]
    ids = np.array(classes.ids, np.uint8)
    return [
        (ids[indices], class_overlay(_photo(image), ids[indices], classes))
        for image, indices in zip(images, predict_classes(model, images, batch_size), strict=True)
    ]
