"""Every environment variable brinelite reads, declared in one place.

Each setting is read when it is needed (not at import), so a test or a notebook can change
the environment between calls. The table in the README lists them for users.

=================================  ==========================================================
``BRINELITE_HOME``                 the cache folder (default: the platform's user cache dir)
``BRINELITE_CONFIG_DIR``           where ``registries.json`` lives (default: user config dir)
``BRINELITE_REGISTRY``             registries asked first, comma separated
``BRINELITE_TOKEN``                bearer token for a single registry (see docs/registry.md)
``BRINELITE_OFFLINE``              ``1``: never touch the network (like ``HF_HUB_OFFLINE``)
``BRINELITE_MAX_IMAGE_PIXELS``     largest image (width x height) decoded; ``0`` = no limit
``BRINELITE_MAX_DOWNLOAD_BYTES``   largest download of undeclared size (20 GiB); ``0`` = no limit
``BRINELITE_DISABLE_PROGRESS_BARS`` ``1``: no progress bars anywhere
``BRINELITE_TOKEN_HOST``           the registry host that gets ``BRINELITE_TOKEN`` among several
``BRINELITE_NO_MALLOC_FIX``        ``1``: ``to_keras`` leaves glibc's malloc thresholds alone
=================================  ==========================================================
"""

from __future__ import annotations

import os

# PIL's MAX_IMAGE_PIXELS: about a 9459 x 9459 image, 256 MB as 8-bit RGB, 1 GB as float32 grey.
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485
DEFAULT_MAX_DOWNLOAD_BYTES = 20 << 30  # 20 GiB: stops an endless body before the disk fills
_TRUE = {"1", "true", "yes", "on"}


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def offline() -> bool:
    """True when ``BRINELITE_OFFLINE`` is set: installed data only, no network at all."""
    return _flag("BRINELITE_OFFLINE")


def progress_bars_disabled() -> bool:
    """True when ``BRINELITE_DISABLE_PROGRESS_BARS`` is set."""
    return _flag("BRINELITE_DISABLE_PROGRESS_BARS")


def max_image_pixels() -> int | None:
    """The pixel ceiling for decoding images (``None`` when set to 0: no limit).

    A malformed value is refused rather than silently replaced by the default.
    """
    return _limit("BRINELITE_MAX_IMAGE_PIXELS", DEFAULT_MAX_IMAGE_PIXELS, "pixels", "200000000")


def max_download_bytes() -> int | None:
    """The largest network download whose size no registry index declares (``None``: no cap).

    A download whose index declares its ``size`` is stopped past that size instead.
    """
    return _limit("BRINELITE_MAX_DOWNLOAD_BYTES", DEFAULT_MAX_DOWNLOAD_BYTES, "bytes", "1e11")


def _limit(name: str, default: int, unit: str, example: str) -> int | None:
    """A whole-number ceiling from ``name`` (0 = none); a malformed value is an error."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 20):
        from .errors import BrineliteError

        raise BrineliteError(
            f"{name}={raw[:40]!r} is not a whole number of {unit}; "
            f"set it to e.g. {int(float(example))}, or 0 for no limit."
        )
    return int(raw) or None


def token_host() -> str | None:
    """``BRINELITE_TOKEN_HOST``: the one registry host (``host`` or ``host:port``) that gets
    ``BRINELITE_TOKEN`` when several registries are configured (docs/registry.md, Access)."""
    host = os.environ.get("BRINELITE_TOKEN_HOST", "").strip().lower()
    return host or None


def malloc_fix_disabled() -> bool:
    """True when ``BRINELITE_NO_MALLOC_FIX`` is set: ``to_keras`` leaves malloc as it finds it."""
    return _flag("BRINELITE_NO_MALLOC_FIX")
