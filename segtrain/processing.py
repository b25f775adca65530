"""Turn one dataset sample (image, mask) into network input, in two stages.

The processor keeps the image's first 3 channels (grey images are repeated to 3 so the RGB U-Net
accepts them), resizes it, optionally augments it, and scales it to [0, 1]. The mask is read,
resized, warped and finished by the run's ``segtrain.tasks.MaskTask``: a binary mask is made one
grey channel (the red channel of a red-on-blue colour mask), thresholded ("fix mask") before and
after the resize and warp, and scaled to 0/1; a class map's mask becomes training indices
(``ClassMap.to_indices``: ids -> 0..N-1, void and anything undeclared -> N), only ever resized,
warped and flipped with nearest neighbour, so no id is blended with another. Images arrive in
RGB order, values 0-255, HxW or HxWxC.

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

from segtrain.augment import (
    random_horizontal_flip,
    random_hue_saturation_value,
    random_shift_scale_rotate,
)
from segtrain.tasks import BinaryMasks, MaskTask

Sample = tuple[np.ndarray, np.ndarray]


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
    """Resize to ``size`` x ``size`` bilinearly."""
    return cv2.resize(array, (size, size), interpolation=cv2.INTER_LINEAR)


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
    task: MaskTask | None = None,
) -> Processor:
    """Return the seed's processing of one ``(image, mask)`` sample, as a two-stage ``Processor``.

    It returns ``(image, mask)``: image (size, size, 3) float32 in [0, 1]; mask (size, size, 1),
    float32 of 0 or 1 for binary masks (``task`` None: ``BinaryMasks``), uint8 training indices
    (0..N-1, void N) for a class map's (``ClassMaps``): the ``task`` reads the mask
    (``segtrain.tasks``). With ``augment`` it applies, each with probability 0.5, a
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
    task = task or BinaryMasks()
    shared = rng

    def prepare(sample: Sample) -> Sample:
        image, mask = sample
        return _resized_rgb(image, size), task.prepare_mask(mask, size)

    def augment_stage(sample: Sample, rng: np.random.Generator | None = shared) -> Sample:
        image, mask = sample
        if augment:
            image = random_hue_saturation_value(image, hue, sat, val, rng=rng)
            image, mask = random_shift_scale_rotate(
                image, mask, shift, scale, rotate, rng=rng, **task.warp
            )
            image, mask = random_horizontal_flip(image, mask, rng=rng)
        return image / 255, task.finish_mask(mask)

    key = f"segtrain.prepare:v{PROCESSING_VERSION}:size={size}{task.key}"
    return Processor(prepare, augment_stage, key, augment)
