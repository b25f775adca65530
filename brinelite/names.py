"""Dataset names (``scope/name[@version]``) and semantic versions.

A name has exactly one slash. Each part starts with a lower-case letter or a
digit and continues with lower-case letters, digits, ``-``, ``_`` or ``.``
(at most 64 characters, never ``..``). Versions are semantic: ``MAJOR.MINOR.PATCH``
with an optional SemVer pre-release (``1.0.0-rc1``, ``2.1.0-beta.2``), ordered as SemVer
orders them (``1.0.0-alpha < 1.0.0-rc1 < 1.0.0``); build metadata (``+...``) is refused,
since it would give one version two spellings. Upper case is refused rather than folded so
that one dataset has one spelling in every cache and registry.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import InvalidNameError

_PART = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_IDENTIFIER = r"(?:0|[1-9]\d*|\d*[a-z-][0-9a-z-]*)"
_VERSION = re.compile(
    rf"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-({_IDENTIFIER}(?:\.{_IDENTIFIER})*))?"
)


@functools.total_ordering
@dataclass(frozen=True)
class Version:
    """A semantic version, pre-release included; instances sort in SemVer precedence order."""

    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()

    @property
    def is_prerelease(self) -> bool:
        """True for versions such as ``1.0.0-rc1``."""
        return bool(self.prerelease)

    def _key(self) -> tuple:
        # A release sorts after its pre-releases; numeric identifiers sort numerically and
        # before alphanumeric ones; a shorter list of equal identifiers sorts first (SemVer 11).
        identifiers = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.prerelease)
        return (self.major, self.minor, self.patch, not self.prerelease, identifiers)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() < other._key()

    def __str__(self) -> str:
        core = f"{self.major}.{self.minor}.{self.patch}"
        return f"{core}-{'.'.join(self.prerelease)}" if self.prerelease else core


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
    """Parse ``MAJOR.MINOR.PATCH[-PRERELEASE]``; raise :class:`InvalidNameError` otherwise.

    Example: ``parse_version("1.0.0-rc1") < parse_version("1.0.0")`` is True.
    """
    match = _VERSION.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise InvalidNameError(
            f"Version {text!r} is not valid: use semantic versions such as 1.0.0, 2.3.1 or "
            "1.0.0-rc1 (lower case, no +build metadata)."
        )
    major, minor, patch, prerelease = match.groups()
    return Version(
        int(major), int(minor), int(patch), tuple(prerelease.split(".") if prerelease else ())
    )


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
    """The highest of ``versions`` in SemVer order (a pre-release only wins over older
    releases), or None when there are none."""
    return max(versions, default=None)


def suggest(wanted: str, known: Iterable[str]) -> str:
    """A ' Did you mean ...?' sentence for close matches of ``wanted``, or ''."""
    close = difflib.get_close_matches(wanted, list(known), n=3, cutoff=0.6)
    return f" Did you mean {', '.join(close)}?" if close else ""
