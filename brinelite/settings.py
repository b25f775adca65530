"""Every environment variable brinelite reads, read in one place.

No other brinelite module touches ``os.environ`` (tests/test_architecture.py checks it).
Each setting is read when it is needed (not at import), so a test or a notebook can change
the environment between calls. The one table of them, with defaults and meanings, is the
README's settings table (under "The cache"); a test checks that it lists exactly the
variables named here.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from .errors import ArchiveError, BrineliteError, BuildError

# PIL's MAX_IMAGE_PIXELS: about a 9459 x 9459 image, 256 MB as 8-bit RGB, 1 GB as float32 grey.
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485
DEFAULT_MAX_DOWNLOAD_BYTES = 20 << 30  # 20 GiB: stops an endless body before the disk fills
GLOBAL_TOKEN = "BRINELITE_TOKEN"  # a registry added with --token-env VAR reads $VAR instead
_TRUE = {"1", "true", "yes", "on"}


def _read(name: str) -> str:
    """The value of ``name`` without surrounding blanks ("" when unset)."""
    return os.environ.get(name, "").strip()


def _flag(name: str) -> bool:
    return _read(name).lower() in _TRUE


def _whole(raw: str) -> bool:
    """Whether ``raw`` is a plain whole number of a sane length (no sign, no exponent)."""
    return raw.isascii() and raw.isdigit() and len(raw) <= 20


def cache_home() -> Path:
    """``BRINELITE_HOME``, else the platform's user cache folder for brinelite."""
    configured = _read("BRINELITE_HOME")
    if configured:
        return Path(configured).expanduser()
    return Path(platformdirs.user_cache_dir("brinelite"))


def config_dir() -> Path:
    """``BRINELITE_CONFIG_DIR`` (where ``registries.json`` lives), else the user config dir."""
    configured = _read("BRINELITE_CONFIG_DIR")
    if configured:
        return Path(configured).expanduser()
    return Path(platformdirs.user_config_dir("brinelite"))


def listed_registries() -> list[str]:
    """The registries ``BRINELITE_REGISTRY`` names (comma separated), asked before the others."""
    return [url.strip() for url in _read("BRINELITE_REGISTRY").split(",") if url.strip()]


def token(variable: str) -> str | None:
    """The bearer token held by ``variable``: ``BRINELITE_TOKEN``, or the one a registry was
    added with (``brinelite registry add NAME URL --token-env VAR``); None when unset."""
    return _read(variable) or None


def s3_endpoint() -> str | None:
    """The endpoint of an S3-compatible server (MinIO, Ceph): ``BRINELITE_S3_ENDPOINT_URL``,
    else the AWS SDKs' ``AWS_ENDPOINT_URL``; None for AWS itself."""
    return _read("BRINELITE_S3_ENDPOINT_URL") or _read("AWS_ENDPOINT_URL") or None


def max_extract_bytes() -> int | None:
    """``BRINELITE_MAX_EXTRACT_BYTES``: the most bytes an archive may expand to (None: unset,
    the default of :func:`brinelite.archive.default_limit` applies).

    Unlike the other ceilings it has no "no limit": an unbounded extraction is how a bomb
    fills a disk, so 0 or a malformed value is refused.
    """
    raw = _read("BRINELITE_MAX_EXTRACT_BYTES")
    if not raw:
        return None
    if not _whole(raw) or int(raw) == 0:
        raise ArchiveError(
            f"BRINELITE_MAX_EXTRACT_BYTES={raw[:40]!r} is not a positive number of bytes; "
            "fix or unset it."
        )
    return int(raw)


def source_date_epoch() -> int | None:
    """``SOURCE_DATE_EPOCH`` (reproducible-builds.org): the time builds record, in seconds
    since 1970; None when unset."""
    raw = _read("SOURCE_DATE_EPOCH")
    if raw and not _whole(raw):
        raise BuildError(f"SOURCE_DATE_EPOCH={raw[:40]!r} is not a whole number of seconds.")
    return int(raw) if raw else None


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
    raw = _read(name)
    if not raw:
        return default
    if not _whole(raw):
        raise BrineliteError(
            f"{name}={raw[:40]!r} is not a whole number of {unit}; "
            f"set it to e.g. {int(float(example))}, or 0 for no limit."
        )
    return int(raw) or None


def token_host() -> str | None:
    """``BRINELITE_TOKEN_HOST``: the one registry host (``host`` or ``host:port``) that gets
    ``BRINELITE_TOKEN`` when several registries are configured (docs/registry.md, Access)."""
    return _read("BRINELITE_TOKEN_HOST").lower() or None


def malloc_fix_disabled() -> bool:
    """True when ``BRINELITE_NO_MALLOC_FIX`` is set: ``to_keras`` leaves malloc as it finds it."""
    return _flag("BRINELITE_NO_MALLOC_FIX")
