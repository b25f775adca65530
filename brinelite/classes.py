"""What a dataset's masks mean: binary (foreground/background) or a map of semantic classes.

A class map names each class and the pixel id that stands for it in a mask, optionally a
colour per class (for colour-coded masks, as CamVid's and VOC's originals, and for drawing)
and an ``ignore`` id (void: pixels scored by nothing). It is written by users as
``classes.json`` beside ``images/`` and ``masks/``::

    {"classes": [{"id": 0, "name": "sky", "color": [128, 128, 128]},
                 {"id": 1, "name": "building"}],
     "ignore": 11}

(``"ignore_color": [0, 0, 0]`` names void's colour in colour-coded masks) and stored in the
manifest (``docs/format.md``). Ids need not be contiguous: training maps
them onto ``0..N-1`` with :meth:`ClassMap.to_indices`, void onto :attr:`ClassMap.void_index`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import jsonio
from .errors import BuildError, LabelMapError, ManifestError

CLASSES_FILE = "classes.json"
BINARY_THRESHOLD = 100  # a binary mask's grey values under it are background (show, segtrain)
_LABEL_MAP_VALUES = 64  # at most this many distinct values: more is a JPEG or antialiased mask
_LABEL_MAP_SHARE = 0.01  # values 1..99 on at least 1% of the pixels: more than an edge
MAX_ID = 255  # masks of class ids are 8-bit images
MAX_CLASSES = MAX_ID  # training indices are 8-bit too, and void takes the one after the last
_MAX_FILE_BYTES = 1 << 20
_MAX_NAME = 100


@dataclass(frozen=True)
class SegmentationClass:
    """One class: the pixel id standing for it, its name, and optionally its RGB colour."""

    id: int
    name: str
    color: tuple[int, int, int] | None = None


@dataclass(frozen=True)
class ClassMap:
    """The classes of a semantic-segmentation dataset, in their declared order.

    Example::

        classes = ClassMap.from_json({"classes": [{"id": 0, "name": "road"},
                                                  {"id": 7, "name": "car"}], "ignore": 255})
        classes.to_indices(mask)   # 0 -> 0, 7 -> 1, 255 -> classes.void_index (2)
    """

    classes: tuple[SegmentationClass, ...]
    ignore: int | None = None
    shares: dict[str, float] = field(default_factory=dict, compare=False)
    ignore_color: tuple[int, int, int] | None = None

    @property
    def names(self) -> list[str]:
        """Class names in order (the model's output channels)."""
        return [c.name for c in self.classes]

    @property
    def ids(self) -> list[int]:
        """Pixel ids in order."""
        return [c.id for c in self.classes]

    @property
    def void_index(self) -> int:
        """The training index of void (and of any undeclared id): one past the last class."""
        return len(self.classes)

    def lookup(self) -> np.ndarray:
        """A 256-entry table from pixel id to training index (void and unknown -> void_index)."""
        table = np.full(MAX_ID + 1, self.void_index, dtype=np.uint8)
        table[self.ids] = np.arange(len(self.classes), dtype=np.uint8)
        return table

    def to_indices(self, mask: np.ndarray) -> np.ndarray:
        """Map a mask of pixel ids (HxW or HxWx1, uint8) onto training indices 0..N (N = void)."""
        ids = np.asarray(mask)
        if ids.ndim == 3:
            ids = ids[..., 0]
        return self.lookup()[ids.astype(np.uint8)]

    def undeclared(self, mask: np.ndarray) -> list[int]:
        """The pixel values of ``mask`` that are neither a class id nor the ignore id."""
        allowed = set(self.ids) | ({self.ignore} if self.ignore is not None else set())
        return sorted(int(v) for v in np.unique(mask) if int(v) not in allowed)

    def palette(self) -> np.ndarray:
        """An (N, 3) uint8 RGB colour per class: the declared one, else from a fixed colormap."""
        colours = np.empty((len(self.classes), 3), dtype=np.uint8)
        for k, item in enumerate(self.classes):
            colours[k] = item.color if item.color is not None else _default_colour(k)
        return colours

    def colors_to_ids(self, rgb: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
        """Convert a colour-coded mask (HxWx3 RGB) to ids; also return undeclared colours."""
        if any(item.color is None for item in self.classes):
            raise BuildError("Colour masks need a colour for every class in classes.json.")
        pixels = np.asarray(rgb)[..., :3].astype(np.uint32)
        packed = (pixels[..., 0] << 16) | (pixels[..., 1] << 8) | pixels[..., 2]
        ids = np.full(packed.shape, self.ignore if self.ignore is not None else 0, np.uint8)
        known = np.zeros(packed.shape, dtype=bool)
        pairs = [(item.id, item.color) for item in self.classes]
        if self.ignore is not None and self.ignore_color is not None:
            pairs.append((self.ignore, self.ignore_color))
        for pixel_id, (r, g, b) in pairs:  # type: ignore[misc]
            hit = packed == ((r << 16) | (g << 8) | b)
            ids[hit] = pixel_id
            known |= hit
        unknown = np.unique(packed[~known])
        colours = [(int(v >> 16), int((v >> 8) & 255), int(v & 255)) for v in unknown[:10]]
        return ids, colours

    def to_json(self) -> dict[str, Any]:
        """The manifest's (and ``classes.json``'s) form."""
        entries = []
        for item in self.classes:
            entry: dict[str, Any] = {"id": item.id, "name": item.name}
            if item.color is not None:
                entry["color"] = list(item.color)
            entries.append(entry)
        data: dict[str, Any] = {"classes": entries}
        if self.ignore is not None:
            data["ignore"] = self.ignore
        if self.ignore_color is not None:
            data["ignore_color"] = list(self.ignore_color)
        if self.shares:
            data["shares"] = dict(self.shares)
        return data

    @classmethod
    def from_json(cls, data: Any, where: str = "classes.json") -> ClassMap:
        """Parse and check a class map; a :class:`ManifestError` says what is wrong and where."""
        try:
            return _parse(data)
        except (TypeError, ValueError, KeyError) as exc:
            raise ManifestError(f"{where} is not a valid class map: {exc}.") from None


def _parse(data: Any) -> ClassMap:
    if not isinstance(data, dict) or not isinstance(data.get("classes"), list):
        raise ValueError('it must be an object with a "classes" list')
    unknown = set(data) - {"classes", "ignore", "ignore_color", "shares"}
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}")
    entries = data["classes"]
    if not 1 <= len(entries) <= MAX_CLASSES:
        raise ValueError(f"it must declare 1 to {MAX_CLASSES} classes, not {len(entries)}")
    classes = tuple(_parse_class(entry, k) for k, entry in enumerate(entries))
    for attribute in ("id", "name", "color"):
        values = [getattr(c, attribute) for c in classes if getattr(c, attribute) is not None]
        twice = sorted({str(v) for v in values if values.count(v) > 1})
        if twice:
            raise ValueError(f"classes share a {attribute}: {', '.join(twice)}")
    ignore = data.get("ignore")
    if ignore is not None:
        ignore = _pixel_id(ignore, "ignore")
        if ignore in {c.id for c in classes}:
            raise ValueError(f"ignore id {ignore} is also a class id")
    ignore_color = data.get("ignore_color")
    if ignore_color is not None:
        if ignore is None:
            raise ValueError('"ignore_color" needs an "ignore" id')
        ignore_color = _colour(ignore_color, "ignore")
        if ignore_color in {c.color for c in classes}:
            raise ValueError(f"ignore_color {list(ignore_color)} is also a class colour")
    shares = _parse_shares(data.get("shares", {}), classes)
    return ClassMap(classes, ignore, shares, ignore_color)


def _parse_class(entry: Any, k: int) -> SegmentationClass:
    if not isinstance(entry, dict) or set(entry) - {"id", "name", "color"}:
        raise ValueError(f'class {k} must be an object with "id", "name" and optional "color"')
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > _MAX_NAME:
        raise ValueError(f"class {k} needs a name of 1 to {_MAX_NAME} characters")
    if any(ch in name for ch in ",\n\r\t"):
        raise ValueError(f"class name {name!r} holds a comma, tab or line break")
    if not name.isprintable():
        raise ValueError(f"class name {name!r} holds a control or invisible character")
    color = entry.get("color")
    color = None if color is None else _colour(color, f"class {name!r}")
    return SegmentationClass(_pixel_id(entry.get("id"), f"class {name!r}"), name, color)


def _colour(value: Any, what: str) -> tuple[int, int, int]:
    if (
        not isinstance(value, list)
        or len(value) != 3
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        or not all(0 <= v <= 255 for v in value)
    ):
        raise ValueError(f"{what} has color {value!r}; give [R, G, B] from 0 to 255")
    return (value[0], value[1], value[2])


def _pixel_id(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_ID:
        raise ValueError(f"{what} has id {value!r}; ids are whole numbers from 0 to {MAX_ID}")
    return value


def _parse_shares(shares: Any, classes: tuple[SegmentationClass, ...]) -> dict[str, float]:
    names = {c.name for c in classes}
    if not isinstance(shares, dict) or not set(shares) <= names | {"ignore"}:
        raise ValueError('"shares" must map class names to fractions')
    return {str(k): float(v) for k, v in shares.items()}


def _default_colour(k: int) -> tuple[int, int, int]:
    """A distinct colour for class ``k`` (matplotlib's tab20, written out: no matplotlib here)."""
    tab20 = (
        (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
        (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
        (174, 199, 232), (255, 187, 120), (152, 223, 138), (255, 152, 150), (197, 176, 213),
        (196, 156, 148), (247, 182, 210), (199, 199, 199), (219, 219, 141), (158, 218, 229),
    )  # fmt: skip
    return tab20[k % len(tab20)]


def read_classes_file(path: Path) -> ClassMap:
    """Read a user's ``classes.json`` (at most 1 MiB); a :class:`BuildError` on any problem."""
    try:
        if path.stat().st_size > _MAX_FILE_BYTES:
            raise BuildError(f"{path} is larger than 1 MiB; a class map is a short JSON file.")
        data = jsonio.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BuildError(f"Cannot read {path}: {exc.strerror}.") from exc
    except ValueError as exc:
        raise BuildError(f"{path} is not valid JSON: {exc}.") from exc
    try:
        return ClassMap.from_json(data, str(path))
    except ManifestError as exc:
        raise BuildError(str(exc)) from None


def pixel_shares(class_map: ClassMap, counts: np.ndarray) -> dict[str, float]:
    """Each class's share of all pixels from a 256-bin histogram of ids (plus ``ignore``)."""
    total = float(counts.sum()) or 1.0
    shares = {c.name: round(float(counts[c.id]) / total, 6) for c in class_map.classes}
    if class_map.ignore is not None:
        shares["ignore"] = round(float(counts[class_map.ignore]) / total, 6)
    return shares


def mask_ids(class_map: ClassMap, mask: np.ndarray, name: str) -> tuple[np.ndarray | None, str]:
    """The class ids of a decoded mask (HxW uint8), or ``None`` and what is wrong with it.

    A one-channel mask holds ids; a colour mask (3 or 4 channels) is converted through the
    declared colours. Values or colours that the class map does not declare are refused.
    """
    channels = mask.shape[2] if mask.ndim == 3 else 1
    if channels in (3, 4):
        if any(item.color is None for item in class_map.classes):
            return None, (
                f"{name} is a colour mask ({channels} channels) but classes.json gives no "
                "color for every class; save masks of class ids (one channel) or add colors"
            )
        ids, unknown = class_map.colors_to_ids(mask)
        if unknown:
            shown = ", ".join(str(list(c)) for c in unknown)
            return None, f"{name} holds undeclared colours {shown}"
        return ids, ""
    if channels != 1 or mask.dtype != np.uint8:
        return None, f"{name} is not an 8-bit one-channel mask of class ids ({mask.dtype})"
    ids = mask.reshape(mask.shape[:2])
    bad = class_map.undeclared(ids)
    if bad:
        declared = ", ".join(map(str, class_map.ids))
        void = f", ignore {class_map.ignore}" if class_map.ignore is not None else ""
        shown = ", ".join(map(str, bad[:10])) + (" ..." if len(bad) > 10 else "")
        return None, f"{name} holds undeclared values {shown} (declared ids {declared}{void})"
    return ids, ""


def binary_counts(mask: np.ndarray) -> np.ndarray | None:
    """A 256-bin histogram of a one-channel 8-bit mask's values (None for other masks)."""
    if mask.dtype != np.uint8 or (mask.ndim == 3 and mask.shape[2] != 1):
        return None
    return np.bincount(mask.ravel(), minlength=MAX_ID + 1)


def label_map_error(counts: np.ndarray, where: str, write_to: str) -> LabelMapError | None:
    """The error for masks without a class map whose values (``counts``, a 256-bin histogram)
    look like class ids; None when they read well as binary masks.

    They do when there are few distinct values (at most 64) and values from 1 to 99, which
    binary reading turns into background, cover at least 1% of the pixels: CamVid's ids 0-11
    would train empty masks. The error carries a skeleton ``classes.json`` naming the values
    found and says where to write it (``write_to``).
    """
    values = [int(v) for v in np.flatnonzero(counts)]
    total = int(counts.sum())
    hidden = int(counts[1:BINARY_THRESHOLD].sum())
    if not total or len(values) > _LABEL_MAP_VALUES or hidden < _LABEL_MAP_SHARE * total:
        return None
    skeleton = {"classes": [{"id": v, "name": f"class_{v}"} for v in values]}
    return LabelMapError(
        f"The {where} hold only the values {', '.join(map(str, values))} and no class map "
        f"says what they mean: read as binary masks, values under {BINARY_THRESHOLD} are "
        f"background, so {hidden / total:.0%} of the pixels would lose their label. Name "
        f"the classes in {write_to}, starting from {json.dumps(skeleton)}, or pass --binary "
        "to treat them as binary masks anyway.",
        values,
        skeleton,
    )
