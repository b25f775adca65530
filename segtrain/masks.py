"""Mask conversions: a stored mask (grey, coloured, RGBA) read as one channel or as binary.

The Carvana/chairs masks are two-colour images, red foreground on blue background; others are
grey, or grey with an alpha channel. ``mask_to_gray`` reads each kind as one grey channel (a
coloured mask by its red channel), ``fix_mask`` binarises it at ``threshold`` (100 by default,
as ``brinelite preview`` draws a binary mask). Numpy and OpenCV only.

    binary = fix_mask(dataset.load_image(row.mask))  # HxW of 0 and 255
"""

from __future__ import annotations

import cv2
import numpy as np

THRESHOLD = 0.5  # the probability from which evaluation counts a pixel as foreground


def to_gray(array: np.ndarray) -> np.ndarray:
    """One grey channel, HxW, from an HxW, HxWx1, RGB or RGBA array (alpha is dropped).

    Colour arrays must be uint8, uint16 or float32, the types OpenCV converts.

    Example::

        to_gray(np.full((2, 2, 3), (255, 0, 0), np.uint8))[0, 0]  # 76
    """
    if array.ndim == 2:
        return array
    if array.shape[2] < 3:
        return array[..., 0]
    return cv2.cvtColor(np.ascontiguousarray(array[..., :3]), cv2.COLOR_RGB2GRAY)


def mask_to_gray(mask: np.ndarray) -> np.ndarray:
    """One grey channel, HxW, from a mask: the red channel of a colour mask, else its grey value.

    The Carvana/chairs masks are two-colour images, red = foreground on blue = background.
    Plain RGB to grey turns pure red into 76 and pure blue into 29, both under the threshold,
    and the foreground would vanish; so a mask whose colour channels differ anywhere is read by
    its red channel. A grey-looking mask (R = G = B, or one channel) gives its grey value.
    Alpha is ignored.

    Example::

        mask_to_gray(np.full((2, 2, 3), (255, 0, 0), np.uint8))[0, 0]  # 255
    """
    if mask.ndim == 3 and mask.shape[2] >= 3:
        red, green, blue = mask[..., 0], mask[..., 1], mask[..., 2]
        if not (np.array_equal(red, green) and np.array_equal(green, blue)):
            return red
    return to_gray(mask)


def fix_mask(mask: np.ndarray, threshold: float = 100) -> np.ndarray:
    """Binarise a mask (see ``mask_to_gray``) to HxW of 0 and 255: under ``threshold`` is 0.

    Example::

        fix_mask(np.array([[99, 100]], np.uint8))  # [[0, 255]]
    """
    gray = mask_to_gray(mask)
    zero, full = gray.dtype.type(0), gray.dtype.type(255)
    return np.where(gray < threshold, zero, full)
