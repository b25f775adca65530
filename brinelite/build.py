"""Turning a folder of images and masks, or a CSV with a config, into a dataset.

Two sources are understood:

- a folder holding ``images/`` and ``masks/`` whose files pair by stem
  (``images/00.png`` with ``masks/00.png``; any of png/jpg/jpeg/bmp/tif/tiff);
- a JSON config naming a CSV and its column types, as ``brine build --config`` had:
  ``{"path": "data.csv", "columns": [{"name": "image", "type": "image"}, ...]}``.

Every file is decoded before anything is written, and every problem found is
reported at once, so a user fixes their folder in one pass.
"""

from __future__ import annotations

import csv
import json
import shutil
import tempfile
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from . import archive
from . import manifest as manifest_io
from .errors import BrineliteError, BuildError
from .images import IMAGE_SUFFIXES, read_image
from .manifest import Column, Manifest
from .names import parse_name, parse_version
from .progress import Progress, Silent

_TYPE_ALIASES = {"integer": "int"}


@dataclass(frozen=True)
class Source:
    """What a dataset will hold: typed columns, rows, and the folder image paths are relative to."""

    root: Path
    columns: list[Column]
    rows: list[tuple]


@dataclass(frozen=True)
class BuildResult:
    """A built archive and the manifest inside it."""

    manifest: Manifest
    archive: Path
    sha256: str


def _listing(problems: list[str], limit: int = 8) -> str:
    shown = "; ".join(problems[:limit])
    return shown + (f"; and {len(problems) - limit} more" if len(problems) > limit else "")


def _images_by_stem(folder: Path, problems: list[str]) -> dict[str, str]:
    found: dict[str, list[str]] = defaultdict(list)
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            stem = path.relative_to(folder).with_suffix("").as_posix()
            found[stem].append(path.relative_to(folder.parent).as_posix())
    for stem, paths in found.items():
        if len(paths) > 1:
            problems.append(f"duplicate stem {stem!r}: {', '.join(paths)}")
    return {stem: paths[0] for stem, paths in found.items()}


def scan_pairs(folder: Path) -> Source:
    """Pair ``images/`` with ``masks/`` by stem; a :class:`BuildError` lists every offender."""
    folder = Path(folder)
    if not (folder / "images").is_dir() or not (folder / "masks").is_dir():
        raise BuildError(
            f"{folder} needs an images/ and a masks/ folder (paired by file stem), "
            "or pass a JSON config describing a CSV."
        )
    problems: list[str] = []
    images = _images_by_stem(folder / "images", problems)
    masks = _images_by_stem(folder / "masks", problems)
    problems += [f"image without mask: {images[s]}" for s in sorted(images.keys() - masks.keys())]
    problems += [f"mask without image: {masks[s]}" for s in sorted(masks.keys() - images.keys())]
    if problems:
        raise BuildError(f"Cannot build from {folder}: {_listing(problems)}.")
    rows = [(images[stem], masks[stem]) for stem in sorted(images)]
    if not rows:
        raise BuildError(f"{folder}/images holds no image files ({', '.join(IMAGE_SUFFIXES)}).")
    columns = [Column("image", "image"), Column("mask", "image")]
    return Source(folder, columns, rows)


def read_config(config_path: Path) -> Source:
    """Read a Brine-style JSON config and the CSV it names."""
    config_path = Path(config_path)
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        csv_path = config_path.parent / config["path"]
        specs = [(c["name"], _TYPE_ALIASES.get(c["type"], c["type"])) for c in config["columns"]]
        with open(csv_path, newline="", encoding="utf-8") as handle:
            table = list(csv.DictReader(handle))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BuildError(
            f"Could not parse config file {config_path} ({type(exc).__name__}: {exc}); it needs "
            '"path" (a CSV) and "columns" ([{"name": ..., "type": ...}]).'
        ) from exc
    bad_types = [f"{n}: {t}" for n, t in specs if t not in manifest_io.COLUMN_TYPES]
    absent = [name for name, _ in specs if table and name not in table[0]]
    if bad_types or absent:
        raise BuildError(
            f"Config {config_path}: unknown column types ({', '.join(bad_types) or 'none'}), "
            f"columns missing from the CSV ({', '.join(absent) or 'none'}); types are "
            f"{', '.join(manifest_io.COLUMN_TYPES)}."
        )
    columns = [_column_from(name, kind, table) for name, kind in specs]
    rows = [tuple(record[name] for name, _ in specs) for record in table]
    return Source(config_path.parent, columns, rows)


def _column_from(name: str, kind: str, table: list[dict[str, str]]) -> Column:
    if kind != "category":
        return Column(name, kind)
    return Column(name, kind, tuple(dict.fromkeys(record[name] for record in table)))


def check_images(source: Source, progress: Progress | None = None) -> None:
    """Decode every image of ``source``; raise :class:`BuildError` listing every failure.

    Also checks that the image columns of one row agree in height and width
    (an image and its mask must line up pixel for pixel).
    """
    progress = progress or Silent()
    image_columns = [k for k, c in enumerate(source.columns) if c.isimage()]
    progress.start(len(source.rows))

    def check(row: tuple) -> list[str]:
        sizes, problems = {}, []
        for k in image_columns:
            try:
                sizes[row[k]] = read_image(_inside(source.root, row[k])).shape[:2]
            except BrineliteError as exc:
                problems.append(str(exc).rstrip("."))
        if len(set(sizes.values())) > 1:
            problems.append(
                "size mismatch " + ", ".join(f"{p} {h}x{w}" for p, (h, w) in sizes.items())
            )
        progress.advance(1)
        return problems

    with ThreadPoolExecutor(2) as pool:
        problems = [p for found in pool.map(check, source.rows) for p in found]
    if problems:
        raise BuildError(f"Cannot build the dataset: {_listing(problems)}.")


def _inside(root: Path, relative: str) -> Path:
    """``root/relative``, refusing paths that leave ``root``."""
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()):
        raise BuildError(f"Image path {relative!r} points outside {root}.")
    return path


def stage(
    source: Source,
    dest: Path,
    name: str,
    version: str,
    description: str = "",
    license: str = "",
    progress: Progress | None = None,
) -> Manifest:
    """Check ``source``, copy its files into the empty folder ``dest`` and write the manifest."""
    check_images(source, progress)
    for k, column in enumerate(source.columns):
        if column.isimage():
            for row in source.rows:
                target = dest / row[k]
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(_inside(source.root, row[k]), target)
    return manifest_io.create(
        dest, name, version, source.columns, source.rows, description, license
    )


def load_source(path: Path) -> Source:
    """A folder of ``images/`` + ``masks/``, or a JSON config naming a CSV."""
    path = Path(path)
    if path.is_dir():
        return scan_pairs(path)
    if path.is_file() and path.suffix.lower() == ".json":
        return read_config(path)
    raise BuildError(f"{path} is neither a folder with images/ and masks/ nor a JSON config file.")


def build(
    src: Path,
    name: str,
    version: str,
    out: Path | None = None,
    description: str = "",
    license: str = "",
    progress: Progress | None = None,
) -> BuildResult:
    """Build a dataset archive (``.tar.gz``) from ``src``; see the module docstring."""
    version = str(parse_version(version))
    name = str(parse_name(name))
    source = load_source(src)
    out = Path(out) if out else Path(f"{name.replace('/', '-')}-{version}.tar.gz")
    with tempfile.TemporaryDirectory(prefix="brinelite-build-") as tmp:
        manifest = stage(source, Path(tmp), name, version, description, license, progress)
        sha256 = archive.create(Path(tmp), out)
    return BuildResult(manifest, out, sha256)
