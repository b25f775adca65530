"""Named splits a dataset declares: which rows are ``train``, ``val``, ``test``.

CamVid, Cityscapes, VOC and most public sets come with their splits, chosen so that frames
of one video or one city stay together; a random fold of their rows would leak neighbouring
frames between training and validation. A split is a name (:data:`NAME`) and the sorted row
numbers it holds; a row belongs to at most one split. ``brinelite build`` reads them from
``split-NAME.txt`` files (one image stem per line) beside ``images/``, or from a ``split``
column of a CSV source; the manifest stores them (``docs/format.md``) and
``Dataset.split(name)`` gives the view.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import BuildError

NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
SPLIT_FILE = re.compile(r"split-(.*)\.txt")
SPLIT_COLUMN = "split"
MAX_SPLITS = 32
MAX_FILE_BYTES = 64 << 20  # a million stems of 60 characters

Splits = dict[str, tuple[int, ...]]


def _shown(items: Sequence[str], limit: int = 5) -> str:
    """Up to ``limit`` items quoted (each cut to 60 characters), then how many more."""
    listed = ", ".join(repr(item[:60]) for item in items[:limit])
    return listed + (f" and {len(items) - limit} more" if len(items) > limit else "")


def check_name(name: str, where: str) -> str:
    """``name`` if it is a valid split name; a :class:`ValueError` saying where otherwise."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ValueError(
            f"{where} names split {_shown([str(name)])}: split names are 1-32 lower-case "
            "letters, digits, '-' or '_', starting with a letter or digit (train, val, test)"
        )
    return name


def check(splits: Any, rows: int) -> Splits:
    """The manifest's ``splits`` object, checked: names, row numbers in range, sorted, disjoint.

    Raises :class:`ValueError` (the manifest reader turns it into a ``ManifestError``). Checked
    in Python: a number too large for numpy (``10**20``) is out of range, not an overflow.
    """
    if not isinstance(splits, Mapping) or len(splits) > MAX_SPLITS:
        raise ValueError(f'"splits" must map at most {MAX_SPLITS} names to lists of row numbers')
    checked: Splits = {}
    for name, numbers in splits.items():
        check_name(name, "the manifest")
        if not isinstance(numbers, list | tuple) or not all(type(n) is int for n in numbers):
            raise ValueError(f"split {name!r} must be a list of row numbers")
        ascending = all(a < b for a, b in zip(numbers, numbers[1:], strict=False))
        if not numbers or not ascending or numbers[0] < 0 or numbers[-1] >= rows:
            raise ValueError(
                f"split {name!r} must list distinct row numbers from 0 to {rows - 1}, ascending"
            )
        checked[name] = tuple(numbers)
    every = [number for numbers in checked.values() for number in numbers]
    if len(set(every)) != len(every):
        raise ValueError("a row belongs to two splits")
    return checked


def split_files(folder: Path) -> dict[str, Path]:
    """The ``split-NAME.txt`` files at the top of ``folder`` by split name."""
    found = {}
    for path in sorted(folder.iterdir()):
        matched = SPLIT_FILE.fullmatch(path.name)
        if matched and path.is_file():
            try:
                found[check_name(matched.group(1), str(path.name))] = path
            except ValueError as exc:
                raise BuildError(f"{folder}: {exc}; rename the file.") from None
    if len(found) > MAX_SPLITS:
        raise BuildError(f"{folder} holds {len(found)} split files; at most {MAX_SPLITS}.")
    return found


def _stems(path: Path) -> list[str]:
    """The stems ``path`` lists, one a line (blank lines skipped); refused if listed twice."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise BuildError(f"{path} is larger than 64 MiB; a split file lists one stem a line.")
        lines = path.read_bytes().decode("utf-8").splitlines()
    except OSError as exc:
        raise BuildError(f"Cannot read {path}: {exc.strerror}.") from exc
    except UnicodeDecodeError:
        raise BuildError(f"{path} is not UTF-8 text; list one image stem a line.") from None
    stems = [line.strip() for line in lines if line.strip()]
    twice = sorted({stem for stem, count in Counter(stems).items() if count > 1})
    if twice:
        raise BuildError(f"{path} lists {len(twice)} stem(s) twice: {_shown(twice)}.")
    return stems


def from_files(folder: Path, stems: Sequence[str]) -> Splits:
    """The splits the ``split-NAME.txt`` files of ``folder`` declare over rows named ``stems``.

    Refuses, listing them, stems that are not rows (a path, a suffix, a typo) and rows that
    two files claim. Example: ``from_files(Path("camvid"), ["a", "b"])`` -> ``{"val": (1,)}``.
    """
    rows = {stem: k for k, stem in enumerate(stems)}
    splits: Splits = {}
    owner: dict[int, str] = {}
    for name, path in split_files(folder).items():
        listed = _stems(path)
        if not listed:
            raise BuildError(f"{path} lists no stems; delete it or list one image stem a line.")
        unknown = [stem for stem in listed if stem not in rows]
        if unknown:
            raise BuildError(
                f"{path.name} lists {len(unknown)} stem(s) that are not rows of {folder}: "
                f"{_shown(unknown)}; list image stems as in images/STEM.png, one a line."
            )
        twice = [stem for stem in listed if rows[stem] in owner]
        if twice:
            other = owner[rows[twice[0]]]
            raise BuildError(
                f"{len(twice)} row(s) are in two splits ({other} and {name}): {_shown(twice)}; "
                "a row belongs to one split."
            )
        owner.update(dict.fromkeys((rows[stem] for stem in listed), name))
        splits[name] = tuple(sorted(rows[stem] for stem in listed))
    return splits


def from_column(values: Sequence[str], where: str) -> Splits:
    """The splits a CSV's ``split`` column declares (an empty cell: the row is in none)."""
    splits: dict[str, list[int]] = {}
    for k, value in enumerate(values):
        name = value.strip()
        if name:
            try:
                splits.setdefault(check_name(name, where), []).append(k)
            except ValueError as exc:
                raise BuildError(f"Row {k + 1} of {exc}.") from None
    if len(splits) > MAX_SPLITS:
        raise BuildError(f"{where} names {len(splits)} splits; at most {MAX_SPLITS}.")
    return {name: tuple(rows) for name, rows in sorted(splits.items())}
