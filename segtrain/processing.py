"""Turn one dataset sample (image, mask) into network input, in two stages.

The processor keeps the image's first 3 channels (grey images are repeated to 3 so the RGB U-Net
accepts them), makes a binary mask one grey channel (the red channel of a red-on-blue colour
mask) and thresholds it ("fix mask"), resizes both, optionally augments them, thresholds the mask
again (resampling blurs its edge), and scales the image to [0, 1] (the binary mask too). A class
map's mask is turned into training indices instead (``ClassMap.to_indices``: ids -> 0..N-1, void
and anything undeclared -> N) and only ever resized, warped and flipped with nearest neighbour,
so no id is blended with another. Images arrive in RGB order, values 0-255, HxW or HxWxC.

The work is split where the seed's processing is split: ``prepare`` (deterministic: channels,
mask, resize) and ``augment`` (the random part, then the final scaling). brinelite's
``to_keras(prepare=..., augment=..., prepare_key=...)`` computes ``prepare`` once per row and
caches it; calling the ``Processor`` runs both stages, the one-stage processing function. Pure
numpy + OpenCV.
"""

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from brinelite import ClassMap
from segtrain.augment import (
    random_horizontal_flip,
    random_hue_saturation_value,
    random_shift_scale_rotate,
)

Sample = tuple[np.ndarray, np.ndarray]


def to_gray(array: np.ndarray) -> np.ndarray:
    """One grey channel, HxW, from an HxW, HxWx1, RGB or RGBA array (alpha is dropped).

    Colour arrays must be uint8, uint16 or float32, the types OpenCV converts.
    """
    if array.ndim == 2:
        return array
    if array.shape[2] < 3:
        return array[..., 0]
    return cv2.cvtColor(np.ascontiguousarray(array[..., :3]), cv2.COLOR_RGB2GRAY)


def mask_to_gray(mask: np.ndarray) -> np.ndarray:
    """One grey channel, HxW, from a mask: the red channel of a colour mask, else its grey value.

    The seed's masks are two-colour images, red = foreground on blue = background. Plain RGB to
    grey turns pure red into 76 and pure blue into 29, both under the threshold, and the foreground
    would vanish; so a mask whose colour channels differ anywhere is read by its red channel. A
    grey-looking mask (R = G = B, or one channel) gives its grey value. Alpha is ignored.
    """
    if mask.ndim == 3 and mask.shape[2] >= 3:
        red, green, blue = mask[..., 0], mask[..., 1], mask[..., 2]
        if not (np.array_equal(red, green) and np.array_equal(green, blue)):
            return red
    return to_gray(mask)


def fix_mask(mask: np.ndarray, threshold: float = 100) -> np.ndarray:
    """Binarise a mask (see ``mask_to_gray``) to HxW of 0 and 255: under ``threshold`` is 0."""
    gray = mask_to_gray(mask)
    zero, full = gray.dtype.type(0), gray.dtype.type(255)
    return np.where(gray < threshold, zero, full)


def _channels(image: np.ndarray) -> np.ndarray:
    """The channels the model takes, float32: the first 3 (HxWx3), or the first one (HxW)."""
    image = np.asarray(image, np.float32)
    if image.ndim == 2:
        return image
    return np.ascontiguousarray(image[..., :3] if image.shape[2] >= 3 else image[..., 0])


def _as_rgb(array: np.ndarray) -> np.ndarray:
    """An HxW grey array repeated to HxWx3; an HxWx3 array as it is."""
    return np.repeat(array[..., np.newaxis], 3, axis=2) if array.ndim == 2 else array


def to_rgb(image: np.ndarray) -> np.ndarray:
    """HxWx3 float32 from a decoded image, converted as for the model (see ``make_processor``)."""
    return _as_rgb(_channels(image))


def _resized_rgb(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` resized bilinearly to (size, size, 3) float32 (see ``make_processor``).

    Repeating a grey channel after the resize interpolates one channel instead of three.
    """
    return _as_rgb(_resize(_channels(image), size))


def _resize(array: np.ndarray, size: int) -> np.ndarray:
    """Resize to ``size`` x ``size`` bilinearly (a binary mask too: it is re-thresholded later)."""
    return cv2.resize(array, (size, size), interpolation=cv2.INTER_LINEAR)


def _resize_labels(labels: np.ndarray, size: int) -> np.ndarray:
    """Resize a label map to ``size`` x ``size`` with nearest neighbour: ids are never blended."""
    return cv2.resize(labels, (size, size), interpolation=cv2.INTER_NEAREST)


def prepare_image(image: np.ndarray, size: int = 256) -> np.ndarray:
    """The processor's image path without augmentation: (size, size, 3) float32, /255.

    The values are those the model is trained on: an 8-bit image lands in [0, 1]; a 16-bit one
    keeps its range (divided by 255), exactly as ``make_processor`` hands it to training.
    """
    return _resized_rgb(image, size) / 255


PROCESSING_VERSION = 1  # bump when a stage's output changes: it names the prepared cache


@dataclass(frozen=True)
class Processor:
    """The processing of one ``(image, mask)`` sample: ``prepare``, then ``augment``.

    Attributes:
        prepare: the deterministic stage (channels, mask, resize), safe to cache per row.
        augment: the random augmentations (if on), then the final scaling; it may edit its
            arrays in place (brinelite hands it copies of the cached ones).
        key: ``prepare``'s identity and parameters, e.g. ``"segtrain.prepare:v1:size=256"``
            (a class map's ids are part of it): brinelite's ``prepare_key``.
        random: whether ``augment`` draws random numbers (the training processing).

    Calling a processor runs both stages on one sample, the one-stage processing function.

    Example::

        process = make_processor(128)
        batches = fold.to_keras("image", "mask", 8, seed=0, prepare=process.prepare,
                                augment=process.augment, prepare_key=process.key)
    """

    prepare: Callable[[Sample], Sample]
    augment: Callable[..., Sample]
    key: str
    random: bool

    def __call__(self, sample: Sample) -> Sample:
        """Both stages: the network input for one sample."""
        return self.augment(self.prepare(sample))

    def whole_key(self) -> str:
        """The identity of both stages together, for caching a processor that draws nothing.

        Validation batches cache the whole processing (``to_keras(prepare=processor,
        prepare_key=processor.whole_key())``); an augmenting processor has no such key.
        """
        if self.random:
            raise ValueError("an augmenting processor cannot be cached whole")
        return self.key.replace("segtrain.prepare:", "segtrain.process:", 1)


def make_processor(
    size: int = 256,
    augment: bool = True,
    rng: np.random.Generator | None = None,
    hue: tuple[float, float] = (-50, 50),
    sat: tuple[float, float] = (0, 0),
    val: tuple[float, float] = (-15, 15),
    shift: tuple[float, float] = (-0.0625, 0.0625),
    scale: tuple[float, float] = (-0.1, 0.1),
    rotate: tuple[float, float] = (-20, 20),
    classes: ClassMap | None = None,
) -> Processor:
    """Return the seed's processing of one ``(image, mask)`` sample, as a two-stage ``Processor``.

    It returns ``(image, mask)``: image (size, size, 3) float32 in [0, 1]; mask (size, size, 1),
    float32 of 0 or 1 for a binary dataset, uint8 training indices (0..N-1, void N) for a class
    map ``classes``. With ``augment`` it applies, each with probability 0.5, a
    hue/saturation/value shift (``hue``, ``sat``, ``val`` in OpenCV 8-bit HSV units), one
    shift/scale/rotate to both arrays (``shift`` as a fraction of the size, ``scale`` relative,
    ``rotate`` in degrees; a label map is warped with nearest neighbour and a void border), and
    a horizontal flip of both; the random numbers come from ``rng`` (see segtrain.augment), or
    from the generator brinelite hands ``augment`` for each row and epoch (``to_keras`` passes
    ``rng=`` to an augment that takes it), which makes seeded runs repeat exactly with several
    worker threads. Without ``augment`` it is the validation processing.

    Example::

        image, mask = make_processor(128, augment=False)((image, mask))
    """
    parameters = f"v{PROCESSING_VERSION}:size={size}"
    shared = rng
    if classes is None:
        prepare, finish, warp = _binary_prepare(size), _binary_finish, {}
    else:
        parameters += f":ids={','.join(map(str, classes.ids))}"
        prepare, finish = _labels_prepare(size, classes), _labels_finish
        warp = {"mask_interpolation": cv2.INTER_NEAREST, "mask_border": classes.void_index}

    def augment_stage(sample: Sample, rng: np.random.Generator | None = shared) -> Sample:
        image, mask = sample
        if augment:
            image = random_hue_saturation_value(image, hue, sat, val, rng=rng)
            image, mask = random_shift_scale_rotate(
                image, mask, shift, scale, rotate, rng=rng, **warp
            )
            image, mask = random_horizontal_flip(image, mask, rng=rng)
        return image / 255, finish(mask)

    return Processor(prepare, augment_stage, f"segtrain.prepare:{parameters}", augment)


def _binary_prepare(size: int) -> Callable[[Sample], Sample]:
    """The image resized; the mask binarised then resized (its edge stays soft until finished)."""

    def prepare(sample: Sample) -> Sample:
        image, mask = sample
        return _resized_rgb(image, size), _resize(fix_mask(np.asarray(mask, np.float32)), size)

    return prepare


def _binary_finish(mask: np.ndarray) -> np.ndarray:
    """The resized (and maybe warped) mask thresholded again, (size, size, 1) of 0 and 1."""
    return fix_mask(mask)[..., np.newaxis] / 255


def _labels_prepare(size: int, classes: ClassMap) -> Callable[[Sample], Sample]:
    """The image resized; the mask's ids as training indices, resized with nearest neighbour."""

    def prepare(sample: Sample) -> Sample:
        image, mask = sample
        return _resized_rgb(image, size), _resize_labels(classes.to_indices(mask), size)

    return prepare


def _labels_finish(indices: np.ndarray) -> np.ndarray:
    """The label map with its channel axis: (size, size, 1) uint8 training indices."""
    return indices[..., np.newaxis]
