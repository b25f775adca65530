"""Drawing on photos: a foreground probability as a coloured, outlined overlay.

A binary model's prediction is drawn over its photo as the pixels from ``threshold`` filled
with the probability's colour (``COLORMAP``: dark purple for 0, yellow for 1) and outlined in
``OUTLINE``, pink on viridis and on photos; the rest of the photo is left as it is. Numpy and
OpenCV; matplotlib (its colour maps) only when drawing. Class maps are drawn by brinelite's
``class_overlay``.

    overlay = probability_overlay(photo, probability, alpha=0.5)
"""

from __future__ import annotations

import cv2
import numpy as np

from segtrain.masks import THRESHOLD

COLORMAP = "viridis"  # probability overlays: dark purple for 0, yellow for 1
OUTLINE = (255, 64, 160)  # the border of a binary mask in overlays: pink on viridis and photos


def probability_overlay(
    photo: np.ndarray, probability: np.ndarray, alpha: float, threshold: float = THRESHOLD
) -> np.ndarray:
    """``photo`` (HxWx3 uint8) with the mask (probability >= ``threshold``) outlined and filled
    with the colour-mapped probability; the rest of the photo is left as it is. HxWx3 uint8.

    Example::

        probability_overlay(photo, model_output[..., 0], alpha=0.5)
    """
    import matplotlib

    region = probability >= threshold
    colours = matplotlib.colormaps[COLORMAP](probability)[..., :3] * 255
    tinted = np.rint(photo * (1 - alpha) + colours * alpha).astype(np.uint8)
    drawn = np.where(region[..., np.newaxis], tinted, photo)
    return outline(drawn, region, OUTLINE)


def outline(image: np.ndarray, region: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """``image`` (HxWx3 uint8) with the border of the boolean ``region`` drawn in ``colour``;
    the line is thicker on bigger images (1 px up to 300 px).

    Example::

        outline(photo, mask > 0, (255, 64, 160))
    """
    contours, _ = cv2.findContours(
        region.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    thickness = max(1, round(min(region.shape) / 300))
    return cv2.drawContours(np.ascontiguousarray(image), contours, -1, colour, thickness)
