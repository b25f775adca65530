"""Decoding image files into numpy arrays, the one way brinelite does it everywhere.

Arrays are ``(H, W, C)`` in RGB(A) channel order, as Keras' ``img_to_array``
gave them to Brine users: grey images come back as ``(H, W, 1)``, colour as
``(H, W, 3)`` and images with alpha as ``(H, W, 4)``. The dtype is the file's
own (``uint8`` for ordinary PNG/JPEG, ``uint16`` for 16-bit PNG/TIFF).

A file's width and height are read from its header before anything is decoded
(:func:`image_size`), so a small file that claims to be 60000 x 60000 pixels is
refused instead of making the decoder allocate gigabytes: the ceiling is
``BRINELITE_MAX_IMAGE_PIXELS`` (PIL's 89,478,485 by default), or ``max_pixels``.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from . import settings
from .errors import DataError

# The formats whose header gives the size cheaply; also the files ``brinelite build`` collects.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")
FORMATS = "PNG, JPEG, BMP, TIFF, GIF or WebP"
# JPEG start-of-frame markers (C4, C8 and CC are other segments).
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def image_size(data: bytes | np.ndarray) -> tuple[int, int] | None:
    """``(width, height)`` from the header of an encoded image, or None if it is not one.

    Understands PNG (IHDR), JPEG (the SOF segment), GIF, BMP, TIFF (the first IFD) and WebP
    (VP8, VP8L, VP8X) without decoding any pixel.

    Example: ``image_size(Path("a.png").read_bytes())`` -> ``(640, 480)``.
    """
    head = memoryview(data).cast("B")
    try:
        if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
            return struct.unpack_from(">II", head, 16)
        if head[:2] == b"\xff\xd8":
            return _jpeg_size(head)
        if head[:6] in (b"GIF87a", b"GIF89a"):
            return struct.unpack_from("<HH", head, 6)
        if head[:2] == b"BM":
            return _bmp_size(head)
        if head[:4] in (b"II*\x00", b"MM\x00*"):
            return _tiff_size(head)
        if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            return _webp_size(head)
    except struct.error:  # a header cut short
        return None
    return None


def _jpeg_size(data: memoryview) -> tuple[int, int] | None:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # segments without a length
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or pixels before any frame header
            return None
        if marker in _SOF:
            height, width = struct.unpack_from(">HH", data, i + 5)
            return width, height
        i += 2 + struct.unpack_from(">H", data, i + 2)[0]
    return None


def _bmp_size(data: memoryview) -> tuple[int, int]:
    if struct.unpack_from("<I", data, 14)[0] == 12:  # OS/2 BITMAPCOREHEADER
        return struct.unpack_from("<HH", data, 18)
    width, height = struct.unpack_from("<ii", data, 18)
    return abs(width), abs(height)  # a negative height means top-down rows


def _tiff_size(data: memoryview) -> tuple[int, int] | None:
    order = "<" if data[:2] == b"II" else ">"
    offset = struct.unpack_from(order + "I", data, 4)[0]
    found = {}
    for k in range(struct.unpack_from(order + "H", data, offset)[0]):
        tag, kind = struct.unpack_from(order + "HH", data, offset + 2 + 12 * k)
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT (3) or LONG (4)
            code = {3: "H", 4: "I"}.get(kind)
            if code is None:
                return None
            found[tag] = struct.unpack_from(order + code, data, offset + 2 + 12 * k + 8)[0]
    return (found[256], found[257]) if len(found) == 2 else None


def _webp_size(data: memoryview) -> tuple[int, int] | None:
    chunk = bytes(data[12:16])
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack_from("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and data[20] == 0x2F:
        bits = struct.unpack_from("<I", data, 21)[0]
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        width = int.from_bytes(data[24:27], "little") + 1
        return width, int.from_bytes(data[27:30], "little") + 1
    return None


def check_size(path: Path, data: bytes | np.ndarray, max_pixels: int | None = None) -> None:
    """Refuse ``data`` (the bytes of the file at ``path``) unless its header gives a size
    within the ceiling; see :func:`read_image` for ``max_pixels``."""
    size = image_size(data)
    if size is None:
        raise DataError(
            f"Image {path} cannot be decoded: it is not a {FORMATS} image, or its header "
            "is damaged."
        )
    limit = settings.max_image_pixels() if max_pixels is None else max_pixels or None
    width, height = size
    if limit is not None and width * height > limit:
        raise DataError(
            f"Image {path} is {width}x{height} = {width * height:,} pixels, more than the "
            f"limit of {limit:,}; if you trust it, raise BRINELITE_MAX_IMAGE_PIXELS "
            "(0 = no limit)."
        )


def read_image(path: Path, max_pixels: int | None = None) -> np.ndarray:
    """Decode the image at ``path``; raise :class:`DataError` naming the file if it cannot.

    Args:
        path: a PNG, JPEG, BMP, TIFF, GIF (first frame) or WebP file.
        max_pixels: the most pixels (width x height) to decode, checked from the header
            first; None uses ``BRINELITE_MAX_IMAGE_PIXELS`` (default 89,478,485), 0 means
            no limit.

    Returns:
        an ``(H, W, C)`` array in RGB(A) order, in the file's own dtype.

    Example: ``read_image(Path("images/00.png")).shape`` -> ``(512, 512, 1)``.
    """
    import cv2  # imported on first use: it costs a tenth of a second at every CLI start

    try:
        encoded = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise DataError(f"Cannot read image {path}: {exc.strerror}.") from exc
    check_size(path, encoded, max_pixels)
    try:
        decoded = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)
        if decoded is not None and decoded.ndim == 3:
            to_rgb = cv2.COLOR_BGR2RGB if decoded.shape[2] == 3 else cv2.COLOR_BGRA2RGBA
            return cv2.cvtColor(decoded, to_rgb)
    except cv2.error as exc:
        reason = str(exc).strip().splitlines()[-1][:200]
        raise DataError(f"Image {path} cannot be decoded by OpenCV: {reason}.") from exc
    if decoded is None:
        raise DataError(f"Image {path} cannot be decoded: the file is truncated or damaged.")
    return decoded[:, :, np.newaxis]
