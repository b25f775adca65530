"""Decoding image files into numpy arrays, the one way brinelite does it everywhere.

Arrays are ``(H, W, C)`` in RGB(A) channel order, as Keras' ``img_to_array``
gave them to Brine users: grey images come back as ``(H, W, 1)``, colour as
``(H, W, 3)`` and images with alpha as ``(H, W, 4)``. The dtype is the file's
own (``uint8`` for ordinary PNG/JPEG, ``uint16`` for 16-bit PNG/TIFF).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def read_image(path: Path) -> np.ndarray:
    """Decode the image at ``path``; raise :class:`DataError` naming the file if it cannot."""
    import cv2  # imported on first use: it costs a tenth of a second at every CLI start

    try:
        encoded = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise DataError(f"Cannot read image {path}: {exc.strerror}.") from exc
    decoded = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED) if encoded.size else None
    if decoded is None:
        raise DataError(
            f"Image {path} cannot be decoded: the file is empty, truncated or not an image."
        )
    if decoded.ndim == 2:
        return decoded[:, :, np.newaxis]
    to_rgb = cv2.COLOR_BGR2RGB if decoded.shape[2] == 3 else cv2.COLOR_BGRA2RGBA
    return cv2.cvtColor(decoded, to_rgb)
