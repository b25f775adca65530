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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import IntegrityError, ManifestError
from .hashes import FileInfo, file_info
from .names import DatasetRef, parse_name, parse_version

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ROWS = "rows.csv"
INSTALL_RECORD = "install.json"  # written by the installer beside the manifest, not hashed
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
    created: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> DatasetRef:
        """The dataset's ``scope/name@version``."""
        return parse_name(self.name).with_version(self.version)

    @property
    def total_bytes(self) -> int:
        """The size of all data files, rows table included."""
        return sum(info.size for info in self.files.values())

    @property
    def fingerprint(self) -> str:
        """A sha256 over the manifest's canonical JSON: equal fingerprints mean equal datasets."""
        canonical = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "license": self.license,
            "created": self.created,
            "columns": [column.to_json() for column in self.columns],
            "rows": self.rows,
            "files": {path: {"size": i.size, "sha256": i.sha256} for path, i in self.files.items()},
            "extra": self.extra,
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
                created=str(data.get("created", "")),
                extra=dict(data.get("extra") or {}),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ManifestError(f"Manifest is malformed ({type(exc).__name__}: {exc}).") from exc
        if not manifest.columns:
            raise ManifestError("Manifest lists no columns.")
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
                    _safe_relpath(path): FileInfo(int(info["size"]), str(info["sha256"]))
                    for path, info in self._raw.items()
                }
            except (KeyError, TypeError, ValueError) as exc:
                raise ManifestError(f"Manifest file list is malformed ({exc}).") from exc
        return self._files

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


def _safe_relpath(path: str) -> str:
    """Refuse manifest paths that could point outside the dataset folder."""
    parts = path.split("/")
    if not path or path.startswith("/") or "\\" in path or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"file path {path!r} is not a plain relative path")
    return path


def read(folder: Path) -> Manifest:
    """Read ``folder/manifest.json``."""
    path = Path(folder) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
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
    (Path(folder) / MANIFEST).write_text(text, encoding="utf-8")


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
        return [
            list(column) if convert is str else list(map(convert, column))
            for convert, column in zip(converters, values, strict=True)
        ]
    except ValueError as exc:
        raise ManifestError(f"{ROWS} holds a value of the wrong type: {exc}.") from exc


def write_rows(folder: Path, columns: list[Column], rows: list[tuple]) -> None:
    """Write the rows table, header first."""
    with open(Path(folder) / ROWS, "w", newline="", encoding="utf-8") as handle:
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
    description: str = "",
    license: str = "",
    extra: dict[str, Any] | None = None,
) -> Manifest:
    """Write the rows table, hash every file in ``folder`` and write the manifest."""
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
        created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        extra=extra or {},
    )
    write(folder, manifest)
    return manifest


def verify(folder: Path, manifest: Manifest, known: dict[str, FileInfo] | None = None) -> None:
    """Check that ``folder`` holds exactly the manifest's files with their sizes and sha256s.

    ``known`` gives infos already computed (e.g. while extracting) so files are not read twice.
    Raises :class:`IntegrityError` listing every missing, extra or altered file.
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
