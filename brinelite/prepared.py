"""The preprocessed cache: the deterministic part of processing, computed once per row.

Training usually processes each sample in two parts: a deterministic one (decode, fix the
channels and the mask, resize to the model's size) and a random one (augmentation).
``to_keras(..., prepare=..., augment=...)`` runs ``prepare`` once per row and keeps its
results here; later epochs only run ``augment``, on copies, so the cache never changes.

Where the results live (``cache=``):

- ``"memory"``: numpy arrays in this process, refused when their size (estimated from the
  first prepared row times the rows) exceeds ``cache_bytes``;
- ``"disk"``: ``.npy`` files under the brinelite cache (``$BRINELITE_HOME/prepared/<key>/``),
  read back memory-mapped, so the operating system's page cache holds them and every process
  (and every later run) on the machine shares them. They are filled during the first epoch in
  a private folder and appear under their key with one rename once every row is prepared;
- ``"auto"`` (the default): memory when the estimate fits in ``cache_bytes``, else disk.

The key is a sha256 over the dataset's manifest fingerprint (name, version and every file's
sha256), the view's row numbers, the columns, and the preparation's identity: a string the
caller states (``prepare.cache_key`` or ``prepare_key=``) naming the function *and its
parameters*, e.g. ``"segtrain.prepare:size=256"``. A new dataset version, another fold,
another size or another function is another key, so a stale cache is never read. brinelite
does not guess an identity from a function (a lambda or a closure has none it could trust).
``brinelite cache clean`` deletes the disk caches no installed dataset can use any more
(:func:`stale_caches`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import cache
from . import manifest as manifest_io
from .errors import BrineliteError, CacheError, DataError
from .names import parse_name

Sample = tuple[Any, Any]
FORMAT = 1
DEFAULT_CACHE_BYTES = 2 << 30  # 2 GiB: U-Net-256 samples (1 MB each) of about 2000 rows
MODES = ("auto", "memory", "disk")
KEY_FILE = "key.json"


def identity(prepare: Callable[[Sample], Sample], prepare_key: str | None) -> str:
    """The preparation's stated identity: ``prepare_key``, else ``prepare.cache_key``."""
    stated = prepare_key if prepare_key is not None else getattr(prepare, "cache_key", None)
    if not isinstance(stated, str) or not stated.strip():
        name = getattr(prepare, "__qualname__", type(prepare).__name__)
        raise DataError(
            f"prepare={name} has no stable identity to key its cache by: set "
            "prepare.cache_key = 'name:parameters' (e.g. 'myproject.prepare:size=256') or "
            "pass prepare_key='...'; it must change whenever the function's output would."
        )
    return stated


def cache_key(rows: Any, column_names: list[str], stated: str) -> dict[str, Any]:
    """What a prepared cache depends on, as JSON (its sha256 names the disk folder)."""
    indices = np.asarray(rows.indices, dtype="<i8")
    return {
        "format": FORMAT,
        "dataset": rows.manifest.name,
        "version": rows.manifest.version,
        "fingerprint": rows.manifest.fingerprint,
        "rows": hashlib.sha256(indices.tobytes()).hexdigest(),
        "row_count": int(len(indices)),
        "columns": column_names,
        "prepare": stated,
    }


def digest(key: dict[str, Any]) -> str:
    """The sha256 of a key's canonical JSON."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def prepared_root() -> Path:
    """The folder of published disk caches (``$BRINELITE_HOME/prepared``)."""
    return cache.home() / "prepared"


class PreparedStore:
    """Prepared samples of one dataset view, filled once and read every later epoch.

    Args:
        rows: rows in the view.
        key: :func:`cache_key`'s dict for the view and the preparation.
        mode: ``"auto"``, ``"memory"`` or ``"disk"`` (see the module's docstring).
        cache_bytes: the largest size kept in memory.

    ``store.nbytes`` is the memory it holds (0 on disk: the page cache holds those);
    ``store.location`` is ``"memory"``, the published folder, or None before the first row.
    """

    def __init__(self, rows: int, key: dict[str, Any], mode: str, cache_bytes: int) -> None:
        if mode not in MODES:
            raise DataError(f"cache must be one of {', '.join(MODES)}; got {mode!r}.")
        if cache_bytes < 0:
            raise DataError(f"cache_bytes must be at least 0, got {cache_bytes}.")
        self.rows, self.key, self.mode, self.cache_bytes = rows, key, mode, cache_bytes
        self.folder = prepared_root() / digest(key)
        self._lock = threading.Lock()
        self._arrays: list[np.ndarray] | None = None  # x, and y when the samples have one
        self._has_y = True
        self._filled = np.zeros(rows, dtype=bool)
        self._staging: Path | None = None
        self.location: str | None = None
        if mode != "memory":
            self._open_published()

    @property
    def nbytes(self) -> int:
        """Bytes of prepared samples held in this process's memory."""
        if self._arrays is None or self.location != "memory":
            return 0
        return sum(array.nbytes for array in self._arrays)

    def get(self, position: int) -> Sample | None:
        """The prepared sample of ``position`` (views on the cache), or None if not yet made."""
        if not self._filled[position]:
            return None
        assert self._arrays is not None
        x = self._arrays[0][position]
        return x, (self._arrays[1][position] if self._has_y else None)

    def put(self, position: int, sample: Sample, describe: Callable[[], str]) -> Sample:
        """Keep ``sample`` as the prepared ``position``; return the cached copy of it."""
        parts = [np.asarray(sample[0])]
        if sample[1] is not None:
            parts.append(np.asarray(sample[1]))
        with self._lock:
            if self._arrays is None:
                self._allocate(parts, sample[1] is not None)
            assert self._arrays is not None
            self._check(parts, describe)
            for array, part in zip(self._arrays, parts, strict=True):
                array[position] = part
            if not self._filled[position]:
                self._filled[position] = True
                if self._staging is not None and self._filled.all():
                    self._publish()
        return self.get(position)  # type: ignore[return-value]

    def _allocate(self, parts: list[np.ndarray], has_y: bool) -> None:
        self._has_y = has_y
        estimate = self.rows * sum(part.nbytes for part in parts)
        if self.mode == "memory" and estimate > self.cache_bytes:
            raise DataError(
                f"The prepared samples need about {estimate / 2**20:.0f} MiB, over "
                f"cache_bytes={self.cache_bytes} ({self.cache_bytes / 2**20:.0f} MiB); pass "
                "cache='disk' (memory-mapped under the brinelite cache) or a larger cache_bytes."
            )
        if self.mode == "memory" or (self.mode == "auto" and estimate <= self.cache_bytes):
            self._arrays = [np.empty((self.rows, *p.shape), p.dtype) for p in parts]
            self.location = "memory"
            return
        self._staging = self._new_staging()
        self._arrays = [
            np.lib.format.open_memmap(
                self._staging / f"{name}.npy", "w+", p.dtype, (self.rows, *p.shape)
            )
            for name, p in zip("xy", parts, strict=False)
        ]
        self.location = str(self.folder)

    def _check(self, parts: list[np.ndarray], describe: Callable[[], str]) -> None:
        assert self._arrays is not None
        for name, array, part in zip("xy", self._arrays, parts, strict=False):
            if part.shape != array.shape[1:]:
                raise DataError(
                    f"prepare gave {name} of shape {part.shape} on {describe()} but "
                    f"{array.shape[1:]} on earlier rows; a cached preparation must give every "
                    "row the same shapes (resize in prepare, or use processing_function)."
                )
        if len(parts) != len(self._arrays):
            raise DataError(f"prepare gave y=None on {describe()} but not on earlier rows.")

    def _new_staging(self) -> Path:
        # In the cache's tmp/ (same filesystem as prepared/, so publishing is one rename),
        # named like install staging folders so a killed process's leftovers get cleaned.
        try:
            tmp = cache.home() / "tmp"
            tmp.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f"prepared-{os.getpid()}-", dir=tmp))
        except OSError as exc:
            raise CacheError(
                f"Cannot write the prepared cache in {cache.home()} ({exc.strerror}): set "
                "BRINELITE_HOME to a writable folder or pass cache='memory'."
            ) from exc
        weakref.finalize(self, shutil.rmtree, staging, True)  # unpublished leftovers
        return staging

    def _publish(self) -> None:
        """Move the complete staging folder under its key in one rename (first one wins)."""
        assert self._arrays is not None and self._staging is not None
        for array in self._arrays:
            array.flush()  # type: ignore[attr-defined]
        (self._staging / KEY_FILE).write_text(json.dumps(self.key, sort_keys=True) + "\n")
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        for _attempt in range(2):
            try:
                os.rename(self._staging, self.folder)
                break
            except OSError:
                if self._read_published() is not None:
                    break  # another process published this key first: its files equal ours
                shutil.rmtree(self.folder, ignore_errors=True)  # a damaged one: replace it
        self._staging = None

    def _open_published(self) -> None:
        """Map a published cache for this key, if a complete and matching one exists."""
        arrays = self._read_published()
        if arrays is not None:
            self._arrays, self._has_y = arrays, len(arrays) == 2
            self._filled[:] = True
            self.location = str(self.folder)

    def _read_published(self) -> list[np.ndarray] | None:
        """The published arrays (read-only maps) if they match this key and row count."""
        try:
            stored = json.loads((self.folder / KEY_FILE).read_text("utf-8"))
            arrays = [np.load(self.folder / "x.npy", mmap_mode="r")]
            if (self.folder / "y.npy").exists():
                arrays.append(np.load(self.folder / "y.npy", mmap_mode="r"))
        except (OSError, ValueError):
            return None  # none yet, or unreadable: this run prepares its own
        if stored != self.key or any(a.ndim == 0 or len(a) != self.rows for a in arrays):
            return None
        return arrays


def stale_caches() -> list[Path]:
    """The published disk caches that no installed dataset can read again, to be deleted.

    A cache is stale when its ``key.json`` is missing or unreadable, or is of another format or
    another folder name (a damaged or older cache), or when the dataset version it was
    prepared from is not installed, or is installed with another fingerprint (uninstalled, or
    reinstalled from other files). Caches of datasets opened from a folder outside the cache
    count as stale too: brinelite cannot tell whether that folder still exists, and a removed
    cache is only rebuilt during the next first epoch.

    Returns:
        The stale folders under :func:`prepared_root`, sorted.

    Example::

        cache.clean(also=stale_caches())  # what ``brinelite cache clean`` does
    """
    root = prepared_root()
    entries = sorted(root.iterdir()) if root.is_dir() else []
    return [entry for entry in entries if not _usable(entry)]


def _usable(entry: Path) -> bool:
    """Whether a published cache folder matches its key and its key an installed dataset."""
    try:
        key = json.loads((entry / KEY_FILE).read_text("utf-8"))
        if key["format"] != FORMAT or entry.name != digest(key):
            return False
        ref = parse_name(f"{key['dataset']}@{key['version']}")
        installed = manifest_io.read(cache.dataset_path(ref))
    except (OSError, ValueError, KeyError, TypeError, BrineliteError):
        return False
    return installed.fingerprint == key["fingerprint"]
