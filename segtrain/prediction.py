"""Apply a trained U-Net to photos: probability maps, binary masks and confidence overlays.

    model = segtrain.load_model("runs/membrane")
    probabilities = segtrain.predict(model, images)  # one HxW map in [0, 1] per image

``predict_files`` (the ``segtrain predict`` command) writes, per image, ``<stem>.mask.png`` (0 or
255, at the image's own size) and ``<stem>.overlay.png`` (the predicted confidence over the
photo: the more yellow, the more confident, as in the seed), plus ``contact_sheet.png`` with up
to 16 overlays.
"""

from collections.abc import Sequence
from pathlib import Path

import cv2
import matplotlib
import numpy as np
from matplotlib.figure import Figure

from brinelite import IMAGE_SUFFIXES, read_image
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
    if len(images) == 0:
        return []
    size = model.input_shape[1]
    batch = np.stack([prepare_image(image, size) for image in images])
    outputs = model.predict(batch, batch_size=batch_size, verbose=0)[..., 0].astype(np.float32)
    return [
        cv2.resize(output, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
        for output, image in zip(outputs, images, strict=True)
    ]


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
    photo = np.clip(to_rgb(image), 0, 255)
    colours = matplotlib.colormaps[COLORMAP](probability)[..., :3] * 255
    return np.rint(photo * (1 - alpha) + colours * alpha).astype(np.uint8)


def contact_sheet(overlays: Sequence[tuple[str, np.ndarray]], out: Path, columns: int = 4) -> Path:
    """A PNG grid of (title, overlay) tiles with one colour bar for the probability."""
    columns = min(columns, len(overlays))
    rows = -(-len(overlays) // columns)
    figure = Figure(figsize=(2.2 * columns + 0.6, 2.3 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, (title, image) in zip(axes, overlays, strict=False):
        ax.imshow(image)
        ax.set_title(title, fontsize=9)
    scale = matplotlib.cm.ScalarMappable(matplotlib.colors.Normalize(0, 1), COLORMAP)
    figure.colorbar(scale, ax=axes.tolist(), shrink=0.6, label="P(foreground)")
    figure.savefig(out, dpi=72)
    return out


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
) -> Path:
    """Predict every file, write its mask and overlay into ``out`` and a contact sheet; return it.

    Pixels with probability >= ``threshold`` are foreground (255) in the mask. Files are decoded
    with ``brinelite.read_image``, as in training, ``CHUNK`` at a time, so a folder of any size
    fits in memory.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sheet: list[tuple[str, np.ndarray]] = []
    for start in range(0, len(files), CHUNK):
        chunk = files[start : start + CHUNK]
        images = [read_image(path) for path in chunk]
        for path, image, probability in zip(
            chunk, images, predict(model, images, batch_size), strict=True
        ):
            mask = np.where(probability >= threshold, 255, 0).astype(np.uint8)
            _write_png(out / f"{path.stem}.mask.png", mask)
            blended = overlay(image, probability)
            _write_png(out / f"{path.stem}.overlay.png", blended)
            if len(sheet) < SHEET_IMAGES:
                sheet.append((path.name, blended))
    return contact_sheet(sheet, out / SHEET)
