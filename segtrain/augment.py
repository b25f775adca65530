"""Random augmentations from the Carvana repo's train.py, made reproducible.

Each function fires with probability ``u`` and draws its random numbers in the order Carvana
does, from ``rng``: a ``numpy.random.Generator`` (default: one module-level generator), so a
seeded generator gives the same augmentations on every run.

Images are HxWxC in RGB order, uint8 or float32 with values 0-255 (the dataset loader hands
float32); each function returns the dtype and shape it was given. Masks are HxW or HxWx1 and keep
their shape. The geometric transforms resample the mask exactly as the image (bilinear), so a soft
mask edge moves with the image edge; the processing step re-thresholds the mask afterwards.
"""

import math

import cv2
import numpy as np

_DEFAULT_RNG = np.random.default_rng()


def _generator(rng: np.random.Generator | None) -> np.random.Generator:
    return _DEFAULT_RNG if rng is None else rng


def _restore(result: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Return ``result`` in the shape and dtype of ``like``, rounding and clipping for uint8."""
    if like.dtype == np.uint8:
        result = np.clip(np.rint(result), 0, 255)
    return result.reshape(like.shape).astype(like.dtype, copy=False)


def random_hue_saturation_value(
    image: np.ndarray,
    hue_shift_limit: tuple[float, float] = (-180, 180),
    sat_shift_limit: tuple[float, float] = (-255, 255),
    val_shift_limit: tuple[float, float] = (-255, 255),
    u: float = 0.5,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Shift hue, saturation and value of an RGB image by amounts drawn from the limits.

    The limits are in OpenCV's 8-bit HSV units, as in Carvana: hue 0-180 (one unit is two
    degrees), saturation and value 0-255. Hue wraps around its circle; saturation and value are
    clipped to their range. Pixel-wise only: the geometry is untouched.
    """
    rng = _generator(rng)
    if rng.random() >= u:
        return image
    hue_shift = rng.uniform(*hue_shift_limit)
    sat_shift = rng.uniform(*sat_shift_limit)
    val_shift = rng.uniform(*val_shift_limit)

    # Float HSV: hue in degrees [0, 360), saturation and value in [0, 1]; edited in place.
    hue, sat, val = cv2.split(
        cv2.cvtColor(np.asarray(image, np.float32) * (1 / 255), cv2.COLOR_RGB2HSV)
    )
    # Hue wraps around: shifted by the angle's equivalent in [0, 360), it is below 720, so one
    # subtraction wraps it (numpy's float % took most of this function's time).
    hue += (2 * hue_shift) % 360
    np.subtract(hue, 360, out=hue, where=hue >= 360)
    for channel, shift in ((sat, sat_shift), (val, val_shift)):
        channel += shift / 255
        np.clip(channel, 0, 1, out=channel)
    rgb = cv2.cvtColor(cv2.merge((hue, sat, val)), cv2.COLOR_HSV2RGB)
    rgb *= 255
    return _restore(rgb, image)


def random_shift_scale_rotate(
    image: np.ndarray,
    mask: np.ndarray,
    shift_limit: tuple[float, float] = (-0.0625, 0.0625),
    scale_limit: tuple[float, float] = (-0.1, 0.1),
    rotate_limit: tuple[float, float] = (-45, 45),
    aspect_limit: tuple[float, float] = (0, 0),
    border_mode: int = cv2.BORDER_CONSTANT,
    u: float = 0.5,
    rng: np.random.Generator | None = None,
    mask_interpolation: int = cv2.INTER_LINEAR,
    mask_border: float = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Shift (fraction of the size), scale, rotate (degrees) image and mask with one transform.

    As in Carvana: the image corners are rotated and scaled about the centre, then shifted; the
    perspective transform taking the old corners to the new is applied to both arrays. Pixels
    coming from outside the image are filled by ``border_mode`` (zeros by default). A label map
    (class ids) is warped with ``mask_interpolation=cv2.INTER_NEAREST`` and
    ``mask_border=<void id>``, so no id is ever blended with another.
    """
    rng = _generator(rng)
    if rng.random() >= u:
        return image, mask
    height, width = image.shape[:2]
    angle = math.radians(rng.uniform(*rotate_limit))
    scale = rng.uniform(1 + scale_limit[0], 1 + scale_limit[1])
    aspect = rng.uniform(1 + aspect_limit[0], 1 + aspect_limit[1])
    sx = scale * math.sqrt(aspect)
    sy = scale / math.sqrt(aspect)
    dx = round(rng.uniform(*shift_limit) * width)
    dy = round(rng.uniform(*shift_limit) * height)

    cc = math.cos(angle) * sx
    ss = math.sin(angle) * sy
    rotation = np.array([[cc, -ss], [ss, cc]])
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
    centre = np.array([width / 2, height / 2])
    moved = (corners - centre) @ rotation.T + centre + np.array([dx, dy])
    matrix = cv2.getPerspectiveTransform(corners, moved.astype(np.float32))

    def warp(array: np.ndarray, flags: int, mode: int, value: float = 0) -> np.ndarray:
        warped = cv2.warpPerspective(
            array, matrix, (width, height), flags=flags, borderMode=mode, borderValue=value
        )
        return warped.reshape(array.shape)  # OpenCV drops a trailing channel axis of 1

    labels = mask_interpolation == cv2.INTER_NEAREST
    mask_mode = cv2.BORDER_CONSTANT if labels else border_mode
    return (
        warp(image, cv2.INTER_LINEAR, border_mode),
        warp(mask, mask_interpolation, mask_mode, mask_border),
    )


def random_horizontal_flip(
    image: np.ndarray, mask: np.ndarray, u: float = 0.5, rng: np.random.Generator | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Mirror image and mask left to right together."""
    if _generator(rng).random() >= u:
        return image, mask
    return cv2.flip(image, 1).reshape(image.shape), cv2.flip(mask, 1).reshape(mask.shape)
