"""The dataset manifest (``manifest.json``) and rows table (``rows.csv``).

A dataset is a folder holding both files plus the data files the rows point
to. The manifest names the dataset, types its columns and promises the size
and sha256 of every other file; the rows table holds one line per sample, with
image cells as paths relative to the folder. The format is documented, with its
version number, in ``docs/format.md``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import jsonio, splits
from .atomic import atomic_write, write_text
from .classes import ClassMap
from .errors import IntegrityError, ManifestError
from .hashes import FileInfo, file_info
from .names import DatasetRef, parse_name, parse_version
from .paths import UnsafePathError, safe_relpath, unsafe

FORMAT_VERSION = 4  # 2 added "citation", 3 "classes", 4 "splits"; older manifests read unchanged
SPLITLESS_FORMAT = 3  # what a dataset without splits is written as, so format-3 readers read it
MANIFEST = "manifest.json"
ROWS = "rows.csv"
INSTALL_RECORD = "install.json"  # written by the installer beside the manifest, not hashed
# The dataset's card: files at the top of the folder that say where the data comes from.
CARD = re.compile(r"(source|readme|licen[cs]e|citation)(\.md|\.txt)?", re.IGNORECASE)
COLUMN_TYPES = ("image", "category", "string", "int", "float")
_CONVERTERS = {"image": str, "string": str, "category": str, "int": int, "float": float}


@dataclass(frozen=True)
class Column:
    """One column of the rows table: its name, type and (for categories) the labels."""

    name: str
    type: str
    categories: tuple[str, ...] | None = None

    def isimage(self) -> bool:
        """True for image columns, whose cells are file paths."""
        return self.type == "image"

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.categories is not None:
            entry["categories"] = list(self.categories)
        return entry


@dataclass
class Manifest:
    """Everything ``manifest.json`` says about a dataset."""

    name: str
    version: str
    columns: list[Column]
    rows: int
    files: Mapping[str, FileInfo]
    description: str = ""
    license: str = ""
    citation: str = ""
    created: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    classes: ClassMap | None = None  # None: binary masks (foreground vs background)
    splits: dict[str, tuple[int, ...]] = field(default_factory=dict)  # name -> sorted rows

    @property
    def ref(self) -> DatasetRef:
        """The dataset's ``scope/name@version``."""
        return parse_name(self.name).with_version(self.version)

    @property
    def card(self) -> list[str]:
        """The card files (README, SOURCE, LICENSE, CITATION; .md, .txt or bare), sorted."""
        return sorted(path for path in self.files if CARD.fullmatch(path))

    @property
    def total_bytes(self) -> int:
        """The size of all data files, rows table included."""
        return sum(info.size for info in self.files.values())

    @property
    def fingerprint(self) -> str:
        """A sha256 over what the dataset is: the manifest's canonical JSON without ``created``.

        Equal fingerprints mean the same files with the same metadata, whenever and wherever
        they were built; a timestamp never makes two copies of one dataset differ.
        """
        content = {k: v for k, v in self.to_json().items() if k != "created"}
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        """The manifest as ``manifest.json`` holds it (``citation`` only when there is one)."""
        return {
            "format_version": self.format_version,
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "license": self.license,
            **({"citation": self.citation} if self.citation else {}),
            "created": self.created,
            "columns": [column.to_json() for column in self.columns],
            "rows": self.rows,
            "files": {path: {"size": i.size, "sha256": i.sha256} for path, i in self.files.items()},
            "extra": self.extra,
            **({"classes": self.classes.to_json()} if self.classes else {}),
            **({"splits": {k: list(v) for k, v in self.splits.items()}} if self.splits else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        """Parse and check a manifest's JSON object; raise :class:`ManifestError` when malformed."""
        try:
            if data["format_version"] > FORMAT_VERSION:
                raise ManifestError(
                    f"Manifest format {data['format_version']} is newer than this brinelite "
                    f"understands ({FORMAT_VERSION}): upgrade brinelite."
                )
            manifest = cls(
                name=str(parse_name(data["name"])),
                version=str(parse_version(data["version"])),
                columns=[_column(entry) for entry in data["columns"]],
                rows=int(data["rows"]),
                files=FileTable(dict(data["files"])),
                description=str(data.get("description", "")),
                license=str(data.get("license", "")),
                citation=str(data.get("citation", "")),
                created=str(data.get("created", "")),
                extra=dict(data.get("extra") or {}),
                format_version=int(data["format_version"]),
                classes=(
                    ClassMap.from_json(data["classes"], "the manifest's class map")
                    if data.get("classes") is not None
                    else None
                ),
            )
            manifest.splits = splits.check(data.get("splits", {}), manifest.rows)
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise ManifestError(f"Manifest is malformed ({type(exc).__name__}: {exc}).") from exc
        if not manifest.columns:
            raise ManifestError("Manifest lists no columns.")
        if manifest.rows < 0:
            raise ManifestError(f"Manifest claims {manifest.rows} rows.")
        return manifest


class FileTable(Mapping[str, FileInfo]):
    """A manifest's file list, checked and converted on first use.

    Opening a dataset for training never needs it, and converting 200k entries would
    triple the load time of a 100k-row dataset; installing and verifying always use it,
    so a malformed entry is still caught before anything reaches the cache.
    """

    def __init__(self, raw: dict[str, Any]) -> None:
        self._raw = raw
        self._files: dict[str, FileInfo] | None = None

    def _table(self) -> dict[str, FileInfo]:
        if self._files is None:
            try:
                self._files = {
                    safe_relpath(path): FileInfo(int(info["size"]), str(info["sha256"]))
                    for path, info in self._raw.items()
                }
            except UnsafePathError as exc:
                raise ManifestError(f"Manifest file list is unsafe: {exc}") from exc
            except (KeyError, TypeError, ValueError) as exc:
                raise ManifestError(f"Manifest file list is malformed ({exc}).") from exc
        return self._files

    def unchecked_names(self) -> Any:
        """The listed paths as written, without converting the table (fast membership tests)."""
        return self._raw.keys()

    def __getitem__(self, path: str) -> FileInfo:
        return self._table()[path]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._raw)


def _column(entry: dict[str, Any]) -> Column:
    if entry["type"] not in COLUMN_TYPES:
        raise ValueError(f"column {entry['name']!r} has unknown type {entry['type']!r}")
    categories = entry.get("categories")
    return Column(str(entry["name"]), entry["type"], tuple(categories) if categories else None)


def read(folder: Path) -> Manifest:
    """Read ``folder/manifest.json``."""
    path = Path(folder) / MANIFEST
    try:
        data = jsonio.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(
            f"{folder} holds no {MANIFEST}: it is not a brinelite dataset."
        ) from None
    except (OSError, ValueError) as exc:
        raise ManifestError(f"Cannot read {path}: {exc}.") from exc
    return Manifest.from_json(data)


def write(folder: Path, manifest: Manifest) -> None:
    """Write ``folder/manifest.json`` (pretty-printed so people can read it)."""
    text = json.dumps(manifest.to_json(), indent=2, ensure_ascii=False) + "\n"
    write_text(Path(folder) / MANIFEST, text)


def read_rows(folder: Path, manifest: Manifest) -> list[list[Any]]:
    """The rows table as one list of typed values per column (column-major, for speed)."""
    converters = [_CONVERTERS[column.type] for column in manifest.columns]
    names = [column.name for column in manifest.columns]
    try:
        with open(Path(folder) / ROWS, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header != names:
                raise ManifestError(f"{ROWS} has columns {header}, but the manifest lists {names}.")
            values = list(zip(*reader, strict=False)) or [() for _ in names]
    except OSError as exc:
        raise ManifestError(f"Cannot read {ROWS} in {folder}: {exc}.") from exc
    if len(values) != len(names) or len(values[0]) != manifest.rows:
        raise ManifestError(f"{ROWS} does not hold the {manifest.rows} rows the manifest promises.")
    try:
        table = [
            list(column) if convert is str else list(map(convert, column))
            for convert, column in zip(converters, values, strict=True)
        ]
    except ValueError as exc:
        raise ManifestError(f"{ROWS} holds a value of the wrong type: {exc}.") from exc
    check_cells(manifest, table)
    return table


def check_cells(manifest: Manifest, table: list[list[Any]]) -> None:
    """Refuse image cells that are not safe relative paths listed in the manifest's ``files``.

    This is what keeps ``load_image``, ``to_keras`` and ``show`` inside the dataset folder:
    a cell such as ``../../secret.png`` or ``/etc/x.png`` never reaches a file read. Cheap
    enough to run at every open (set operations; each distinct cell is checked once).
    """
    files = manifest.files
    listed = files.unchecked_names() if isinstance(files, FileTable) else files.keys()
    for column, cells in zip(manifest.columns, table, strict=True):
        if not column.isimage():
            continue
        distinct = set(cells)
        bad = sorted(distinct.difference(listed)) or unsafe(distinct)
        if bad:
            shown = ", ".join(repr(cell) for cell in bad[:3]) + (" ..." if len(bad) > 3 else "")
            raise ManifestError(
                f"{ROWS} column {column.name!r} names {len(bad)} file(s) that are not safe "
                f"relative paths listed in the manifest: {shown}."
            )


def write_rows(folder: Path, columns: list[Column], rows: list[tuple]) -> None:
    """Write the rows table, header first."""
    with atomic_write(Path(folder) / ROWS, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([column.name for column in columns])
        writer.writerows(rows)


def list_files(folder: Path) -> list[str]:
    """Every regular file under ``folder`` except the manifest, as sorted posix relative paths."""
    found = []
    for root, _dirs, files in os.walk(folder):
        for name in files:
            relative = (Path(root) / name).relative_to(folder).as_posix()
            if relative != MANIFEST:
                found.append(relative)
    return sorted(found)


def create(
    folder: Path,
    name: str,
    version: str,
    columns: list[Column],
    rows: list[tuple],
    *,
    description: str = "",
    license: str = "",
    extra: dict[str, Any] | None = None,
    citation: str = "",
    created: str = "",
    classes: ClassMap | None = None,
    declared_splits: dict[str, tuple[int, ...]] | None = None,
) -> Manifest:
    """Write the rows table, hash every file in ``folder`` and write the manifest.

    ``created`` (UTC ISO-8601) is the caller's to choose, so that building the same files
    twice gives the same bytes (see :func:`brinelite.build.build`). ``declared_splits`` maps
    split names to row numbers (:mod:`brinelite.splits`); only a dataset with splits is
    written as format 4, so one without reads in every brinelite that reads format 3.
    """
    folder = Path(folder)
    write_rows(folder, columns, rows)
    manifest = Manifest(
        name=str(parse_name(name)),
        version=str(parse_version(version)),
        columns=columns,
        rows=len(rows),
        files={path: file_info(folder / path) for path in list_files(folder)},
        description=description,
        license=license,
        citation=citation,
        created=created,
        extra=extra or {},
        classes=classes,
        format_version=FORMAT_VERSION if declared_splits else SPLITLESS_FORMAT,
        splits=splits.check(declared_splits or {}, len(rows)),
    )
    check_cells(
        manifest, [list(column) for column in zip(*rows, strict=True)] or [[]] * len(columns)
    )
    write(folder, manifest)
    return manifest


def verify(folder: Path, manifest: Manifest, known: dict[str, FileInfo] | None = None) -> None:
    """Check that ``folder`` holds exactly the manifest's files with their sizes and sha256s,
    and that ``rows.csv`` agrees with the manifest (header, row count, types, image cells).

    ``known`` gives infos already computed (e.g. while extracting) so files are not read twice.
    Raises :class:`IntegrityError` listing every missing, extra or altered file, or
    :class:`ManifestError` for the rows (:func:`read_rows`). Installing calls it before
    anything reaches the cache, so a dataset whose rows point elsewhere never installs.
    """
    folder = Path(folder)
    present = set(list_files(folder)) - {INSTALL_RECORD}
    missing = sorted(set(manifest.files) - present)
    extra = sorted(present - set(manifest.files))
    altered = []
    for path in sorted(set(manifest.files) & present):
        actual = (known or {}).get(path) or file_info(folder / path)
        expected = manifest.files[path]
        if actual != expected:
            altered.append(f"{path} (sha256 {actual.sha256}, expected {expected.sha256})")
    problems = [
        f"{label}: {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}"
        for label, items in (("missing", missing), ("not in manifest", extra), ("altered", altered))
        if items
    ]
    if problems:
        raise IntegrityError(
            f"Dataset {manifest.name}@{manifest.version} fails verification: "
            + "; ".join(problems)
            + "."
        )
    read_rows(folder, manifest)
