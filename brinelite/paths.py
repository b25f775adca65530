"""Relative paths that cannot leave their folder: the one check every path from outside passes.

A dataset names files by paths relative to its folder (manifest file table, rows cells); an
archive names its members; a registry index names its archives; ``brinelite serve`` gets paths
in URLs. All of them come from someone else, so all of them go through :func:`safe_relpath`:
a plain, ``/``-separated relative path with no ``..`` part, no absolute or Windows form
(``/x``, ``C:x``, ``\\``), no NUL or other control character and no undecodable bytes.
:func:`inside` adds the file-system half: the path, symlinks resolved, stays under a root.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from .errors import BrineliteError

_DRIVE = re.compile(r"[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CLIMBS = "contains '..'"


class UnsafePathError(BrineliteError, ValueError):
    """A path that could point outside its folder; ``reason`` says why, for the caller's message.

    ``escapes`` is True for a well-formed path that climbs out (``..``, a symlink out), False
    for a malformed one (absolute, Windows, control characters).
    """

    def __init__(self, path: str, reason: str, escapes: bool = False) -> None:
        super().__init__(f"Path {path!r} {reason}.")
        self.path = path
        self.reason = reason
        self.escapes = escapes


def _reason(path: str, normalise: bool) -> str | None:
    """Why ``path`` is not a safe relative path, or None when it is."""
    if not isinstance(path, str):
        return f"is a {type(path).__name__}, not a text path"
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates stand for bytes that were not UTF-8
        return "is not valid UTF-8"
    if _CONTROL.search(path):
        return "holds a control character (NUL, newline, ...)"
    if path.startswith("/"):
        return "is an absolute path"
    if "\\" in path or _DRIVE.match(path):
        return "has a backslash or drive letter (a Windows path)"
    parts = path.split("/")
    if ".." in parts:
        return _CLIMBS
    if not normalise and any(part in ("", ".") for part in parts):
        return "is empty or has empty or '.' parts"
    return None


def safe_relpath(path: str, *, normalise: bool = False) -> str:
    """``path`` as a clean relative POSIX path, or :class:`UnsafePathError` saying why not.

    Args:
        path: the path as the outside source spelled it.
        normalise: drop empty and ``.`` parts (``./images//a.png`` -> ``images/a.png``), as
            archive members and URLs are written; the result may then be ``""``. Without it
            such parts are refused, since manifests must name each file one way only.

    Example: ``safe_relpath("images/00.png")`` returns it; ``safe_relpath("../x")`` raises.
    """
    reason = _reason(path, normalise)
    if reason is not None:
        raise UnsafePathError(str(path), reason, escapes=reason == _CLIMBS)
    if not normalise:
        return path
    return "/".join(part for part in path.split("/") if part not in ("", "."))


def is_safe(path: str) -> bool:
    """Whether :func:`safe_relpath` accepts ``path`` as it is (no normalising)."""
    return _reason(path, normalise=False) is None


# Over "\n"-separated paths framed by "\n": every spelling _reason refuses (and a few it
# accepts) has an empty, "." or ".." part between separators, a drive or a bad character.
_SUSPECT = re.compile(r"[/\n]\.{0,2}[/\n]|\n[A-Za-z]:|[\\\x00-\x09\x0b-\x1f\x7f]")


def unsafe(paths: Iterable[str]) -> list[str]:
    """The paths :func:`is_safe` refuses, sorted; fast for the 200k cells of a large dataset.

    One regular-expression pass over all of them finds any that might be unsafe; only then
    is each checked by the same rule as :func:`safe_relpath`.
    """
    paths = list(paths)
    if all(isinstance(p, str) for p in paths):
        joined = "\n" + "\n".join(paths) + "\n"
        try:
            joined.encode("utf-8")
            clean = joined.count("\n") == len(paths) + 1 and not _SUSPECT.search(joined)
        except UnicodeEncodeError:
            clean = False
        if clean or not paths:
            return []
    return sorted(str(p) for p in paths if _reason(p, normalise=False) is not None)


def inside(root: Path, relative: str, *, normalise: bool = False) -> Path:
    """``root / relative`` after :func:`safe_relpath`; refused if a symlink leads out of ``root``.

    Example: ``inside(dataset_folder, "images/00.png")``.
    """
    clean = safe_relpath(relative, normalise=normalise)
    root = Path(root).resolve()
    path = (root / clean).resolve() if clean else root
    if not path.is_relative_to(root):
        raise UnsafePathError(relative, f"leads outside {root} (a symbolic link)", escapes=True)
    return path
