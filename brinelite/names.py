"""Dataset names (``scope/name[@version]``) and semantic versions.

A name has exactly one slash. Each part starts with a lower-case letter or a
digit and continues with lower-case letters, digits, ``-``, ``_`` or ``.``
(at most 64 characters, never ``..``). Versions are semantic: ``MAJOR.MINOR.PATCH``.
Upper case is refused rather than folded so that one dataset has one spelling
in every cache and registry.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import InvalidNameError

_PART = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_VERSION = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)")


@dataclass(frozen=True, order=True)
class Version:
    """A semantic version; instances sort in release order."""

    major: int
    minor: int
    patch: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


@dataclass(frozen=True)
class DatasetRef:
    """A parsed ``scope/name`` with an optional pinned version."""

    scope: str
    name: str
    version: Version | None = None

    @property
    def full_name(self) -> str:
        """``scope/name`` without the version."""
        return f"{self.scope}/{self.name}"

    def with_version(self, version: Version | str) -> DatasetRef:
        """The same dataset pinned to ``version``."""
        pinned = version if isinstance(version, Version) else parse_version(version)
        return DatasetRef(self.scope, self.name, pinned)

    def __str__(self) -> str:
        return self.full_name if self.version is None else f"{self.full_name}@{self.version}"


def parse_version(text: str) -> Version:
    """Parse ``MAJOR.MINOR.PATCH``; raise :class:`InvalidNameError` with the rule otherwise."""
    match = _VERSION.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise InvalidNameError(
            f"Version {text!r} is not valid: use semantic versions such as 1.0.0 or 2.3.1."
        )
    return Version(*(int(group) for group in match.groups()))


def _check_part(part: str, whole: str) -> None:
    if not _PART.fullmatch(part) or ".." in part:
        raise InvalidNameError(
            f"Dataset name {whole!r} is not valid: use scope/name, each part lower-case "
            "letters, digits, '-', '_' or '.', starting with a letter or digit "
            "(e.g. rohan/chairs-with-masks)."
        )


def parse_name(text: str) -> DatasetRef:
    """Parse ``scope/name`` or ``scope/name@version`` into a :class:`DatasetRef`."""
    if not isinstance(text, str):
        raise InvalidNameError(f"Dataset name must be a string, not {type(text).__name__}.")
    base, at, version = text.partition("@")
    parts = base.split("/")
    if len(parts) != 2:
        _check_part("", text)
    for part in parts:
        _check_part(part, text)
    return DatasetRef(parts[0], parts[1], parse_version(version) if at else None)


def is_name(text: str) -> bool:
    """True when ``text`` parses as a dataset name (used to tell names from paths and URLs)."""
    try:
        parse_name(text)
    except InvalidNameError:
        return False
    return True


def newest(versions: Iterable[Version]) -> Version | None:
    """The highest of ``versions``, or None when there are none."""
    return max(versions, default=None)


def suggest(wanted: str, known: Iterable[str]) -> str:
    """A ' Did you mean ...?' sentence for close matches of ``wanted``, or ''."""
    close = difflib.get_close_matches(wanted, list(known), n=3, cutoff=0.6)
    return f" Did you mean {', '.join(close)}?" if close else ""
