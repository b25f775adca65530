"""Turning a folder of images and masks, or a CSV with a config, into a dataset.

Two sources are understood:

- a folder holding ``images/`` and ``masks/``, or ``NAME/`` and ``NAME_masks/`` (Carvana's
  ``train/`` + ``train_masks/``), whose files pair by stem: ``images/00.png`` with
  ``masks/00.png``, ``masks/00_mask.gif`` or ``masks/00-mask.png`` (any of
  :data:`~brinelite.images.IMAGE_SUFFIXES`);
- a JSON config naming a CSV and its column types, as ``brine build --config`` had:
  ``{"path": "data.csv", "columns": [{"name": "image", "type": "image"}, ...]}``.

Card files beside them (``README``, ``SOURCE``, ``LICENSE``, ``CITATION``; any case, ``.md``,
``.txt`` or bare) are carried into the dataset. Every file is decoded before anything is
written, and every problem found is reported at once, so a user fixes their folder in one
pass. Builds are reproducible: the same files give the same archive, byte for byte.
"""

from __future__ import annotations

import csv
import shutil
import tempfile
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from . import archive, jsonio, settings, splits
from . import manifest as manifest_io
from .classes import (
    CLASSES_FILE,
    ClassMap,
    binary_counts,
    label_map_error,
    mask_ids,
    pixel_shares,
    read_classes_file,
)
from .dataset import Dataset
from .errors import AlreadyExistsError, BrineliteError, BuildError, WriteError, disk_advice
from .hashes import FileInfo
from .images import IMAGE_SUFFIXES, read_image
from .manifest import Column, Manifest
from .names import parse_name, parse_version
from .paths import UnsafePathError, inside, safe_relpath
from .progress import Progress, Silent

_TYPE_ALIASES = {"integer": "int"}
_MASK_SUFFIXES = ("_mask", "-mask")
_PAIR_COLUMNS = [Column("image", "image"), Column("mask", "image")]


@dataclass(frozen=True)
class Source:
    """What a dataset will hold: typed columns, rows, the folder image paths are relative to,
    and the card files (README, LICENSE, ...) found beside them."""

    root: Path
    columns: list[Column]
    rows: list[tuple]
    card: list[Path] = field(default_factory=list)
    classes: ClassMap | None = None  # what the masks mean; None: binary
    splits: dict[str, tuple[int, ...]] = field(default_factory=dict)  # name -> row numbers


@dataclass
class _Masks:
    """What checking the masks against a class map found: pixel counts, colour masks."""

    counts: np.ndarray = field(default_factory=lambda: np.zeros(256, np.int64))
    coloured: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class BuildResult:
    """A built archive and the manifest inside it."""

    manifest: Manifest
    archive: Path
    sha256: str


def _listing(problems: list[str], limit: int = 8) -> str:
    shown = "; ".join(problems[:limit])
    return shown + (f"; and {len(problems) - limit} more" if len(problems) > limit else "")


def _card(folder: Path) -> list[Path]:
    """The card files at the top of ``folder``."""
    return sorted(p for p in folder.iterdir() if p.is_file() and manifest_io.CARD.fullmatch(p.name))


def _pair_folders(folder: Path) -> tuple[Path, Path]:
    """``images/`` + ``masks/``, or the one ``NAME/`` + ``NAME_masks/`` pair, in ``folder``."""
    if (folder / "images").is_dir() and (folder / "masks").is_dir():
        return folder / "images", folder / "masks"
    pairs = [
        (sub, folder / f"{sub.name}_masks")
        for sub in sorted(folder.iterdir())
        if sub.is_dir() and (folder / f"{sub.name}_masks").is_dir()
    ]
    if len(pairs) == 1:
        return pairs[0]
    raise BuildError(
        f"{folder} needs an images/ and a masks/ folder (or NAME/ and NAME_masks/), paired by "
        "file stem, or pass a JSON config describing a CSV."
    )


def _by_stem(folder: Path, problems: list[str]) -> dict[str, str]:
    """The image files under ``folder`` by stem (relative to it), as paths relative to its parent.

    Files of other types are reported, not skipped silently (hidden files are ignored).
    """
    found: dict[str, list[str]] = defaultdict(list)
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder.parent).as_posix()
        if not path.is_file() or path.name.startswith("."):
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            problems.append(
                f"unsupported file type: {relative} (brinelite reads {', '.join(IMAGE_SUFFIXES)})"
            )
            continue
        found[path.relative_to(folder).with_suffix("").as_posix()].append(relative)
    for stem, paths in found.items():
        if len(paths) > 1:
            problems.append(f"duplicate stem {stem!r}: {', '.join(paths)}")
    return {stem: paths[0] for stem, paths in found.items()}


def _image_stem(mask_stem: str, images: dict[str, str]) -> str:
    """The image stem a mask stem pairs with: itself, or itself without ``_mask``/``-mask``."""
    if mask_stem in images:
        return mask_stem
    for suffix in _MASK_SUFFIXES:
        if mask_stem.endswith(suffix) and mask_stem[: -len(suffix)] in images:
            return mask_stem[: -len(suffix)]
    return mask_stem


def scan_pairs(folder: Path) -> Source:
    """Pair images with masks by stem; a :class:`BuildError` lists every offender."""
    folder = Path(folder)
    image_dir, mask_dir = _pair_folders(folder)
    problems: list[str] = []
    images = _by_stem(image_dir, problems)
    masks: dict[str, str] = {}
    for stem, path in _by_stem(mask_dir, problems).items():
        paired = _image_stem(stem, images)
        if paired in masks:
            problems.append(f"two masks for one image: {masks[paired]}, {path}")
        masks[paired] = path
    problems += [f"image without mask: {images[s]}" for s in sorted(images.keys() - masks.keys())]
    problems += [f"mask without image: {masks[s]}" for s in sorted(masks.keys() - images.keys())]
    if problems:
        raise BuildError(f"Cannot build from {folder}: {_listing(problems)}.")
    stems = sorted(images)
    rows = [(images[stem], masks[stem]) for stem in stems]
    if not rows:
        raise BuildError(f"{image_dir} holds no image files ({', '.join(IMAGE_SUFFIXES)}).")
    classes = folder / CLASSES_FILE
    class_map = read_classes_file(classes) if classes.is_file() else None
    declared = splits.from_files(folder, stems)
    return Source(folder, _PAIR_COLUMNS, rows, _card(folder), class_map, declared)


def read_config(config_path: Path) -> Source:
    """Read a Brine-style JSON config and the CSV it names."""
    config_path = Path(config_path)
    try:
        config = jsonio.loads(config_path.read_text(encoding="utf-8"))
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
    rows = [tuple(_cell(record[n], kind) for n, kind in specs) for record in table]
    declared = (
        splits.from_column([record[splits.SPLIT_COLUMN] for record in table], csv_path.name)
        if table and splits.SPLIT_COLUMN in table[0]
        else {}
    )
    return Source(config_path.parent, columns, rows, _card(config_path.parent), None, declared)


def _cell(value: str, kind: str) -> str:
    """A CSV cell; image paths in the one spelling the manifest uses (``./a//b`` -> ``a/b``)."""
    if kind != "image":
        return value
    try:
        return safe_relpath(value, normalise=True)
    except UnsafePathError as exc:
        raise BuildError(
            f"Image path {value!r} {exc.reason}: it must be inside the CSV's folder."
        ) from None


def _column_from(name: str, kind: str, table: list[dict[str, str]]) -> Column:
    if kind != "category":
        return Column(name, kind)
    return Column(name, kind, tuple(dict.fromkeys(record[name] for record in table)))


def check_images(source: Source, progress: Progress | None = None) -> _Masks:
    """Decode every image of ``source``; raise :class:`BuildError` listing every failure.

    Also checks that the image columns of one row agree in width and height (an image and
    its mask must line up pixel for pixel) and, with a class map, that every mask holds only
    declared ids or colours. The histogram of mask values it returns (``counts``) is of
    class ids with a class map, else of one-channel 8-bit masks (to recognise label maps).
    Sizes are read from each file's header first, so an image past
    the pixel ceiling is refused without being decoded.
    """
    progress = progress or Silent()
    image_columns = [k for k, c in enumerate(source.columns) if c.isimage()]
    mask_column = _mask_column(source)
    found = _Masks()
    progress.start(len(source.rows))

    def check(row: tuple) -> tuple[list[str], np.ndarray | None]:
        sizes, problems, counts = {}, [], None
        for k in image_columns:
            try:
                array = read_image(inside(source.root, row[k]))
            except BrineliteError as exc:
                problems.append(str(exc).rstrip("."))
                continue
            sizes[row[k]] = (array.shape[1], array.shape[0])
            if k == mask_column and source.classes is None:
                counts = binary_counts(array)
            elif k == mask_column:
                ids, problem = mask_ids(source.classes, array, row[k])
                if ids is None:
                    problems.append(problem)
                else:
                    counts = np.bincount(ids.ravel(), minlength=256)
                    if array.ndim == 3 and array.shape[2] > 1:
                        found.coloured.add(row[k])
        if len(set(sizes.values())) > 1:
            problems.append(
                "size mismatch (WxH) " + ", ".join(f"{p} {w}x{h}" for p, (w, h) in sizes.items())
            )
        progress.advance(1)
        return problems, counts

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(check, source.rows))
    problems = [p for found_problems, _ in results for p in found_problems]
    if problems:
        raise BuildError(f"Cannot build the dataset: {_listing(problems)}.")
    for _, counts in results:
        if counts is not None:
            found.counts += counts
    return found


def _mask_column(source: Source) -> int | None:
    """The position of the mask column: the one called ``mask``, else the second image one."""
    names = [c.name for c in source.columns]
    if "mask" in names and source.columns[names.index("mask")].isimage():
        return names.index("mask")
    images = [k for k, c in enumerate(source.columns) if c.isimage()]
    return images[1] if len(images) > 1 else None


def _write_ids(source: Source, cell: str, dest: Path) -> str:
    """Convert the colour mask ``cell`` to a PNG of class ids in ``dest``; return its cell."""
    import cv2

    ids, _ = mask_ids(source.classes, read_image(inside(source.root, cell)), cell)  # type: ignore[arg-type]
    converted = str(Path(cell).with_suffix(".png").as_posix())
    target = dest / converted
    target.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(target), ids):
        raise BuildError(f"Cannot write the converted mask {target}.")
    return converted


def _inputs(source: Source) -> list[Path]:
    """Every file a dataset is made of: the image cells and the card."""
    return [inside(source.root, cell) for cell in _cells(source)] + source.card


def created_time(files: list[Path]) -> str:
    """The ``created`` time of a build: ``SOURCE_DATE_EPOCH`` if set, else the newest input's
    modification time, so building the same files twice gives the same manifest.

    ``SOURCE_DATE_EPOCH`` is the reproducible-builds.org convention (seconds since 1970).
    """
    seconds = settings.source_date_epoch()
    if seconds is None:
        seconds = max((int(f.stat().st_mtime) for f in files), default=0)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _card_text(card: list[Path], stem: str, limit: int = 4000) -> str:
    """The text of the card file called ``stem`` (e.g. LICENSE), at most ``limit`` characters."""
    for path in card:
        if path.name.split(".")[0].lower() == stem:
            return path.read_text(encoding="utf-8", errors="replace").strip()[:limit]
    return ""


def stage(
    source: Source,
    dest: Path,
    name: str,
    version: str,
    *,
    description: str = "",
    license: str = "",
    progress: Progress | None = None,
    citation: str = "",
    binary: bool = False,
) -> Manifest:
    """Check ``source``, copy its files into the empty folder ``dest`` and write the manifest.

    ``license`` and ``citation`` default to the LICENSE file's first line and the CITATION
    file's text when the source has them. Without a class map, masks that look like label
    maps (:func:`brinelite.classes.label_map_error`) are refused unless ``binary``.
    """
    masks = check_images(source, progress)
    if source.classes is None and not binary:
        _refuse_label_maps(source, masks.counts)
    renamed = {cell: _write_ids(source, cell, dest) for cell in sorted(masks.coloured)}
    for cell in _cells(source):
        if cell in renamed:
            continue
        target = dest / cell
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(inside(source.root, cell), target)
    for path in source.card:
        shutil.copyfile(path, dest / path.name)
    rows = [tuple(renamed.get(value, value) for value in row) for row in source.rows]
    classes = source.classes
    if classes is not None:
        classes = replace(classes, shares=pixel_shares(classes, masks.counts))
    licence_text = _card_text(source.card, "license") or _card_text(source.card, "licence")
    return manifest_io.create(
        dest,
        name,
        version,
        source.columns,
        rows,
        description=description,
        license=license or (licence_text.splitlines() or [""])[0].strip(),
        citation=citation or _card_text(source.card, "citation"),
        created=created_time(_inputs(source)),
        classes=classes,
        declared_splits=source.splits,
    )


def _refuse_label_maps(source: Source, counts: np.ndarray) -> None:
    """Raise the label-map error if the masks of ``source`` hold class ids, not a binary mask."""
    paired = source.columns is _PAIR_COLUMNS  # a folder (its classes.json is read), not a CSV
    write_to = str(source.root / CLASSES_FILE) if paired else "a file given with --classes FILE"
    error = label_map_error(counts, f"masks of {source.root}", write_to)
    if error is not None:
        raise error


def _cells(source: Source) -> list[str]:
    """The distinct image cells of ``source``, sorted (the order :func:`_inputs` lists them)."""
    return sorted(
        {row[k] for k, c in enumerate(source.columns) if c.isimage() for row in source.rows}
    )


def load_source(path: Path) -> Source:
    """A folder of ``images/`` + ``masks/`` (or ``NAME/`` + ``NAME_masks/``), or a JSON config."""
    path = Path(path)
    if path.is_dir():
        return scan_pairs(path)
    if path.is_file() and path.suffix.lower() == ".json":
        return read_config(path)
    raise BuildError(f"{path} is neither a folder with images/ and masks/ nor a JSON config file.")


def open_source(path: Path) -> Dataset:
    """A :class:`Dataset` view of a source before it is built (for ``brinelite show FOLDER``).

    Nothing is copied or hashed; images are decoded from the source folder, with the same
    path and pixel checks as an installed dataset.
    """
    source = load_source(path)
    files = {cell: FileInfo(0, "") for cell in _cells(source)}
    manifest = Manifest(
        str(path), "0.0.0", source.columns, len(source.rows), files, classes=source.classes
    )
    table = [list(column) for column in zip(*source.rows, strict=True)]
    return Dataset(source.root, manifest, table)


def build(
    src: Path,
    name: str,
    version: str,
    out: Path | None = None,
    description: str = "",
    license: str = "",
    progress: Progress | None = None,
    *,
    citation: str = "",
    force: bool = False,
    classes: Path | None = None,
    binary: bool = False,
) -> BuildResult:
    """Build a reproducible dataset archive (``.tar.gz``) from ``src``; see the module docstring.

    Args:
        src: a folder of image/mask pairs, or a JSON config naming a CSV.
        name, version: ``scope/name`` and its semantic version (``1.0.0``, ``1.0.0-rc1``).
        out: the archive to write (default ``scope-name-VERSION.tar.gz``); an existing file
            is refused unless ``force``.
        description, license, citation: for the manifest (license and citation default to
            the source's LICENSE and CITATION files).
        classes: a class map file (``classes.json``, see :mod:`brinelite.classes`) saying
            the masks hold semantic classes; default: ``classes.json`` in ``src`` if any,
            else binary masks. Every mask is checked against it and its pixel shares stored.
        binary: build binary masks even when they look like label maps (few small values,
            e.g. CamVid's ids 0-11, which binary reading turns into empty masks); without it
            such a build is refused, with a skeleton ``classes.json`` of the values found.

    Returns:
        :class:`BuildResult` with the manifest, the archive and its sha256, which is the same
        for every build of the same files (``created`` comes from ``SOURCE_DATE_EPOCH`` or
        the newest input, never the clock).

    Example: ``build(Path("cells"), "lab/cells", "1.0.0").sha256``.
    """
    version = str(parse_version(version))
    name = str(parse_name(name))
    out = Path(out) if out else Path(f"{name.replace('/', '-')}-{version}.tar.gz")
    if out.is_dir() or (out.exists() and not force):
        raise AlreadyExistsError(
            f"{out} already exists; choose another --out or pass --force to overwrite it."
        )
    if not out.absolute().parent.is_dir():
        raise BuildError(f"{out.parent} does not exist; create it or choose another --out.")
    source = load_source(src)
    if classes is not None:
        source = replace(source, classes=read_classes_file(Path(classes)))
    try:
        with tempfile.TemporaryDirectory(prefix="brinelite-build-") as tmp:
            manifest = stage(
                source,
                Path(tmp),
                name,
                version,
                description=description,
                license=license,
                progress=progress,
                citation=citation,
                binary=binary,
            )
            sha256 = archive.create(Path(tmp), out)
    except OSError as exc:
        raise WriteError(
            f"Building {name}@{version} failed ({disk_advice(exc)}); {out} was not written."
        ) from exc
    return BuildResult(manifest, out, sha256)
