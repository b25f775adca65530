"""The preprocessed cache: the deterministic part of processing, computed once per row.

Training usually processes each sample in two parts: a deterministic one (decode, fix the
channels and the mask, resize to the model's size) and a random one (augmentation).
``to_keras(..., prepare=..., augment=...)`` runs ``prepare`` once per row and keeps its
results here; later epochs only run ``augment``, on copies, so the cache never changes.

Where the results live (``cache=``):

- ``"memory"``: numpy arrays in this process (each process keeps its own), refused when
  their size (estimated from the first prepared row times the rows) exceeds ``cache_bytes``;
- ``"disk"``: ``.npy`` files under the brinelite cache (``$BRINELITE_HOME/prepared/<key>/``),
  read back memory-mapped, so the operating system's page cache holds them and every process
  (and every later run) on the machine shares them. During the first epoch every process
  preparing the key (DataLoader workers, ranks of a data-parallel run) fills one shared
  folder, a file per row written whole and renamed into place (:class:`Filling`); the process
  preparing the last row gathers them and the cache appears under its key with one rename.
  A published cache is served only if each file is a regular file (links are never followed)
  of the shape and dtype ``arrays.json`` states: otherwise the rows are prepared again;
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

import contextlib
import hashlib
import json
import math
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import atomic, cache, jsonio
from . import manifest as manifest_io
from .errors import BrineliteError, CacheError, DataError
from .names import parse_name

Sample = tuple[Any, Any]
FORMAT = 2  # 2: arrays.json states the published arrays' shapes and dtypes
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
    A store pickles as its arguments (no samples): a process that unpickles it (a DataLoader
    worker) maps the published disk cache, or shares the filling of it, or fills its own
    memory cache (memory caches are per process).
    """

    def __init__(self, rows: int, key: dict[str, Any], mode: str, cache_bytes: int) -> None:
        if mode not in MODES:
            raise DataError(f"cache must be one of {', '.join(MODES)}; got {mode!r}.")
        if cache_bytes < 0:
            raise DataError(f"cache_bytes must be at least 0, got {cache_bytes}.")
        self.rows, self.key, self.mode, self.cache_bytes = rows, key, mode, cache_bytes
        self.folder = prepared_root() / digest(key)
        partial = cache.home() / "tmp" / f"prepared-{self.folder.name}"
        self.filling = Filling(partial, rows, lambda: self._read_published() is not None)
        self._lock = threading.RLock()
        self._arrays: list[np.ndarray] | None = None  # x, and y when the samples have one
        self._layout: Layout | None = None
        self._unchecked = False  # _layout is a filling's, read before any row of ours fit it
        self._filled = np.zeros(rows, dtype=bool)
        self.location: str | None = None
        if mode != "memory":
            self._open_published()

    def __reduce__(self) -> tuple[Any, ...]:
        return PreparedStore, (self.rows, self.key, self.mode, self.cache_bytes)

    @property
    def nbytes(self) -> int:
        """Bytes of prepared samples held in this process's memory."""
        if self._arrays is None or self.location != "memory":
            return 0
        return sum(array.nbytes for array in self._arrays)

    def get(self, position: int) -> Sample | None:
        """The prepared sample of ``position`` (views on the cache), or None if not yet made."""
        if self._filled[position]:
            return self._row(position)
        if self.location == "memory" or (self.location is None and not self._join()):
            return None
        if self._open_published():  # another process may have published it meanwhile
            return self._row(position)
        assert self._layout is not None
        return self.filling.read(position, self._layout)

    def put(self, position: int, sample: Sample, describe: Callable[[], str]) -> Sample:
        """Keep ``sample`` as the prepared ``position``; return the cached copy of it."""
        with self._lock:
            if self._layout is None:
                self._decide(sample)
            elif self._unchecked and Layout.of(sample) != self._layout:
                self._start_disk(Layout.of(sample))  # the filling's layout was stale: afresh
            self._unchecked = False
            assert self._layout is not None
            parts = self._layout.conform(sample, describe)
            if self.location == "memory":
                assert self._arrays is not None
                if not self._filled[position]:
                    for array, part in zip(self._arrays, parts, strict=True):
                        array[position] = part
                    self._filled[position] = True
                return self._row(position)
            if self._arrays is not None:  # published meanwhile
                return self._row(position)
        if self.filling.add(position, parts, self._layout):
            self._publish()
        return parts[0], parts[1] if len(parts) > 1 else None

    def _row(self, position: int) -> Sample:
        assert self._arrays is not None
        x = self._arrays[0][position]
        return x, (self._arrays[1][position] if len(self._arrays) > 1 else None)

    def _decide(self, sample: Sample) -> None:
        """Memory or disk, from the first prepared row; the disk cache's layout is shared."""
        layout = Layout.of(sample)
        estimate = self.rows * layout.row_bytes()
        if self.mode == "memory" and estimate > self.cache_bytes:
            raise DataError(
                f"The prepared samples need about {estimate / 2**20:.0f} MiB, over "
                f"cache_bytes={self.cache_bytes} ({self.cache_bytes / 2**20:.0f} MiB); pass "
                "cache='disk' (memory-mapped under the brinelite cache) or a larger cache_bytes."
            )
        if self.mode == "memory" or (self.mode == "auto" and estimate <= self.cache_bytes):
            self._arrays = [np.empty((self.rows, *shape), dtype) for shape, dtype in layout.parts]
            self._layout, self.location = layout, "memory"
            return
        self._start_disk(layout)

    def _start_disk(self, layout: Layout, stated: bool = False) -> None:
        """Join (or begin) filling the disk cache; publish it if its rows are all there.

        ``stated``: ``layout`` is the filling's own, not yet checked against a row of ours.
        """
        self._unchecked = stated
        self._layout = self.filling.start(layout, self._lock_name(), stated)
        self.location = str(self.folder)
        if self.filling.complete():
            self._publish()  # a run that stopped while publishing left every row behind

    def _join(self) -> bool:
        """Read from a disk cache other processes are filling, before preparing a row here."""
        layout = self.filling.layout()
        if layout is None or (
            self.mode == "auto" and self.rows * layout.row_bytes() <= self.cache_bytes
        ):
            return False
        with self._lock:
            if self._layout is None:
                self._start_disk(layout, stated=True)
        return self.location != "memory"

    def _lock_name(self) -> str:
        return f"prepared-{self.folder.name}"

    def _publish(self) -> None:
        """Gather the filled rows into ``x.npy``/``y.npy`` and rename them under the key.

        Only the process that added the last row publishes (others keep reading the row files
        until the folder appears); a published folder that is complete wins over ours.
        """
        assert self._layout is not None
        try:
            tmp = cache.home() / "tmp"
            tmp.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f"prepared-{os.getpid()}-", dir=tmp))
        except OSError as exc:
            raise CacheError(
                f"Cannot write the prepared cache in {cache.home()} ({exc.strerror}): set "
                "BRINELITE_HOME to a writable folder or pass cache='memory'."
            ) from exc
        try:
            if not self.filling.gather(staging, self._layout):
                return  # a row file went missing: its row is prepared again, then we publish
            (staging / KEY_FILE).write_text(json.dumps(self.key, sort_keys=True) + "\n")
            self.folder.parent.mkdir(parents=True, exist_ok=True)
            for _attempt in range(2):
                try:
                    os.rename(staging, self.folder)
                    break
                except OSError:
                    if self._read_published() is not None:
                        break  # another process published this key first: its files equal ours
                    _remove(self.folder)  # a damaged one: replace it
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        with cache.lock(self._lock_name()):
            self.filling.remove()
        self._open_published()

    def _open_published(self) -> bool:
        """Map a published cache for this key, if a complete and matching one exists."""
        with self._lock:
            if self._arrays is not None and self.location != "memory":
                return True
            arrays = self._read_published()
            if arrays is None:
                return False
            self._arrays = arrays
            self._layout = Layout([(a.shape[1:], a.dtype) for a in arrays])
            self._filled[:] = True
            self.location = str(self.folder)
            return True

    def _read_published(self) -> list[np.ndarray] | None:
        """The published arrays (read-only maps), if every file is what the key says.

        The key must match; ``arrays.json`` names the arrays with their shapes and dtypes,
        and each must be a regular file (no link) of exactly that shape and dtype. Anything
        else (a deleted, replaced or linked file) is not served: the rows are prepared again.
        """
        try:
            if not _regular(self.folder / KEY_FILE, folder=self.folder):
                return None
            stored = jsonio.loads((self.folder / KEY_FILE).read_text("utf-8"))
            if stored != self.key or not _regular(self.folder / LAYOUT_FILE):
                return None
            layout = Layout.from_json((self.folder / LAYOUT_FILE).read_text("utf-8"))
            return [
                _mapped(self.folder / f"{name}.npy", (self.rows, *shape), dtype)
                for name, (shape, dtype) in zip("xy", layout.parts, strict=False)
            ]
        except (OSError, ValueError, KeyError, TypeError, OverflowError):
            return None  # none yet, or unreadable or not as stated: this run prepares its own


LAYOUT_FILE = "arrays.json"
ROW = ".row"  # a filling's row file: x's bytes then y's, in the layout's shapes and dtypes
MAX_ROW_BYTES = 2**40  # a prepared row of more is no layout brinelite wrote


class Layout:
    """The shape (without the row axis) and dtype of x, and of y when samples have one."""

    def __init__(self, parts: list[tuple[tuple[int, ...], np.dtype]]) -> None:
        self.parts = [(tuple(int(n) for n in shape), np.dtype(dtype)) for shape, dtype in parts]

    @classmethod
    def of(cls, sample: Sample) -> Layout:
        arrays = [np.asarray(part) for part in sample if part is not None]
        return cls([(array.shape, array.dtype) for array in arrays])

    @classmethod
    def from_json(cls, text: str) -> Layout:
        """The layout ``arrays.json`` states; a ValueError unless it could be brinelite's.

        Every dimension a whole number above 0 (not 1e400, -16 or 0), a row at most
        ``MAX_ROW_BYTES`` (not ``2**62`` bytes).
        """
        arrays = jsonio.loads(text)["arrays"]
        shapes = [array["shape"] for array in arrays]
        if not all(type(n) is int and n > 0 for shape in shapes for n in shape):
            raise ValueError("not a layout of prepared samples")
        layout = cls(
            [(shape, np.dtype(array["dtype"])) for shape, array in zip(shapes, arrays, strict=True)]
        )
        if not 1 <= len(layout.parts) <= 2 or any(d.hasobject for _, d in layout.parts):
            raise ValueError("not a layout of prepared samples")
        if layout.row_bytes() > MAX_ROW_BYTES:
            raise ValueError("not a layout of prepared samples")
        return layout

    def to_json(self) -> str:
        arrays = [{"shape": list(shape), "dtype": dtype.str} for shape, dtype in self.parts]
        return json.dumps({"arrays": arrays}) + "\n"

    def row_bytes(self) -> int:
        return sum(math.prod(shape) * dtype.itemsize for shape, dtype in self.parts)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Layout) and self.parts == other.parts

    def conform(self, sample: Sample, describe: Callable[[], str]) -> list[np.ndarray]:
        """``sample``'s arrays in this layout's dtypes; a clear error if its shapes differ."""
        parts = [np.asarray(part) for part in sample if part is not None]
        if len(parts) != len(self.parts):
            raise DataError(f"prepare gave y=None on {describe()} but not on other rows.")
        for name, part, (shape, _dtype) in zip("xy", parts, self.parts, strict=False):
            if part.shape != shape:
                raise DataError(
                    f"prepare gave {name} of shape {part.shape} on {describe()} but "
                    f"{shape} on other rows; a cached preparation must give every "
                    "row the same shapes (resize in prepare, or use processing_function)."
                )
        return [
            part.astype(dtype, copy=False)
            for part, (_s, dtype) in zip(parts, self.parts, strict=True)
        ]


class Filling:
    """A disk cache being filled, shared by every process preparing the same key.

    Each prepared row is one ``<row>.row`` in a folder under the cache's ``tmp/``: the bytes
    of x then y, exactly as the layout states them (a file of any other size is no row),
    written to a temporary name and renamed into place, so a reader never sees half a row and
    several DataLoader workers or ranks can fill the cache at once. Under an inter-process
    lock a counter of rows added is kept (written in place: renaming a file over another made
    the file system write it out, a millisecond per row); the process adding the last row
    copies the rows into the published ``x.npy``/``y.npy`` (:meth:`PreparedStore._publish`).
    ``arrays.json`` holds the layout of the first row prepared, which every other process's
    rows must match.
    """

    def __init__(self, folder: Path, rows: int, published: Callable[[], bool]) -> None:
        self.folder, self.rows, self.published = folder, rows, published
        self.lock_name = ""

    def layout(self) -> Layout | None:
        """The layout stated by the first process that prepared a row, if any did."""
        try:
            return Layout.from_json((self.folder / LAYOUT_FILE).read_text("utf-8"))
        except (OSError, ValueError, KeyError, TypeError, OverflowError):
            return None

    def start(self, layout: Layout, lock_name: str, stated: bool = False) -> Layout:
        """Join (or begin) the filling of rows of ``layout``, and return the layout filled.

        With ``stated`` (``layout`` was read from the filling, no row of ours checked yet)
        it is joined as it is. Otherwise ``layout`` is this process's rows': a filling that
        states another (a stale or edited ``arrays.json``) is begun afresh, as the same key
        gives every process rows of one layout.
        """
        self.lock_name = lock_name
        with cache.lock(lock_name):
            self._make_folder()
            shared = self.layout()
            if shared != layout and not (stated and shared is not None):
                for name in self._row_files():
                    (self.folder / name).unlink(missing_ok=True)
                atomic.write_text(self.folder / LAYOUT_FILE, layout.to_json())
                shared = layout
            self._write_count(len(self._row_files()))  # recounted: a killed run may lag
        return shared

    def read(self, position: int, layout: Layout) -> Sample | None:
        """Row ``position`` if a complete file of the layout holds it, else None."""
        parts = self._load(self._row_path(position), layout)
        if parts is None:
            return None
        return parts[0], parts[1] if len(parts) > 1 else None

    def add(self, position: int, parts: list[np.ndarray], layout: Layout) -> bool:
        """Store one row; True when it was the last missing row (the caller publishes)."""
        tmp = self.folder / f".{position}-{os.getpid()}-{threading.get_ident()}.tmp"
        try:
            self._make_folder()
            with open(tmp, "wb") as out:
                for part in parts:
                    out.write(np.ascontiguousarray(part).data)
            with cache.lock(self.lock_name):
                if self.published():
                    self.remove()  # the publisher removed it while we wrote: leave nothing
                    return False
                target = self._row_path(position)
                if self._size(target) == layout.row_bytes():
                    return False  # another process prepared this row first
                new = not os.path.lexists(target)
                os.replace(tmp, target)
                if not new:
                    return False
                counted = self._read_count()  # a damaged counter is counted afresh
                count = len(self._row_files()) if counted is None else counted + 1
                self._write_count(count)
                return count == self.rows
        except OSError as exc:
            raise CacheError(
                f"Cannot write the prepared cache in {self.folder} ({exc.strerror}): set "
                "BRINELITE_HOME to a writable folder or pass cache='memory'."
            ) from exc
        finally:
            tmp.unlink(missing_ok=True)

    def complete(self) -> bool:
        return (self._read_count() or 0) >= self.rows

    def gather(self, staging: Path, layout: Layout) -> bool:
        """Write every row into ``staging``'s ``x.npy``/``y.npy``; False if one is missing.

        The row files' bytes are appended to the arrays' files as they are (no decoding), and
        the files are synced before the caller renames them into place.
        """
        sizes = [math.prod(shape) * dtype.itemsize for shape, dtype in layout.parts]
        with contextlib.ExitStack() as files:
            outs = [
                files.enter_context(open(staging / f"{name}.npy", "wb"))
                for name in "xy"[: len(layout.parts)]
            ]
            for out, (shape, dtype) in zip(outs, layout.parts, strict=True):
                header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False}
                np.lib.format.write_array_header_1_0(out, {**header, "shape": (self.rows, *shape)})
            for position in range(self.rows):
                row = self._bytes(self._row_path(position), layout)
                if row is None:
                    with cache.lock(self.lock_name):
                        self._write_count(len(self._row_files()))
                    return False
                offset = 0
                for out, size in zip(outs, sizes, strict=True):
                    out.write(row[offset : offset + size])
                    offset += size
            for out in outs:
                out.flush()
                os.fsync(out.fileno())
        atomic.write_text(staging / LAYOUT_FILE, layout.to_json())
        return True

    def remove(self) -> None:
        """Delete the row files (once published; callers hold the lock or are publishing)."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def _make_folder(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)

    def _row_files(self) -> list[str]:
        return [n for n in os.listdir(self.folder) if n.endswith(ROW) and n[: -len(ROW)].isdigit()]

    def _row_path(self, position: int) -> Path:
        return self.folder / f"{position}{ROW}"

    def _read_count(self) -> int | None:
        """The rows added, or None if the counter is missing or not a counter."""
        fd = self._counter(os.O_RDONLY)
        if fd is None:
            return None
        try:
            return int(os.read(fd, 64).decode("ascii"))
        except (OSError, ValueError):
            return None
        finally:
            os.close(fd)

    def _write_count(self, count: int) -> None:
        """Write the counter over itself, fixed width (callers hold the lock)."""
        fd = self._counter(os.O_WRONLY | os.O_CREAT)
        if fd is None:  # a link or a pipe planted there: replaced, never followed
            atomic.write_text(self.folder / "count", str(count))
            return
        try:
            os.pwrite(fd, b"%020d" % count, 0)
        finally:
            os.close(fd)

    def _counter(self, flags: int) -> int | None:
        """The counter file opened with ``flags``, if it is a regular file (links not followed)."""
        try:
            fd = os.open(self.folder / "count", flags | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
        except OSError:
            return None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return None
        return fd

    @staticmethod
    def _size(path: Path) -> int | None:
        """The size of a regular file (links never followed), or None."""
        try:
            status = os.lstat(path)
        except OSError:
            return None
        return status.st_size if stat.S_ISREG(status.st_mode) else None

    @classmethod
    def _bytes(cls, path: Path, layout: Layout) -> memoryview | None:
        """The bytes of one row file, if it is a regular file of exactly the layout's size."""
        if cls._size(path) != layout.row_bytes():
            return None
        try:
            with open(path, "rb") as stored:
                data = stored.read(layout.row_bytes() + 1)
        except OSError:
            return None
        return memoryview(data) if len(data) == layout.row_bytes() else None

    @classmethod
    def _load(cls, path: Path, layout: Layout) -> list[np.ndarray] | None:
        """The arrays of one row file, if it is a regular file of the layout's size."""
        data = cls._bytes(path, layout)
        if data is None:
            return None
        parts, offset = [], 0
        for shape, dtype in layout.parts:
            count = math.prod(shape)
            parts.append(np.frombuffer(data, dtype, count, offset).reshape(shape))
            offset += count * dtype.itemsize
        return parts


def _regular(path: Path, folder: Path | None = None) -> bool:
    """Whether ``path`` (and ``folder``, if given) exist and are no symbolic links.

    lstat, not stat: a link planted in the cache could point anywhere, so it is never followed.
    """
    try:
        if folder is not None and not stat.S_ISDIR(os.lstat(folder).st_mode):
            return False
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _mapped(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A read-only map of an ``.npy`` file that must be a regular file of this shape and dtype."""
    if not _regular(path):
        raise ValueError(f"{path.name} is missing or a link")
    array = np.load(path, mmap_mode="r", allow_pickle=False)
    if array.shape != shape or array.dtype != dtype:
        raise ValueError(f"{path.name} holds {array.shape} {array.dtype}, not {shape} {dtype}")
    return array


def _remove(path: Path) -> None:
    """Delete a file, a link (not what it points to) or a folder."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


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
        key = jsonio.loads((entry / KEY_FILE).read_text("utf-8"))
        if key["format"] != FORMAT or entry.name != digest(key):
            return False
        ref = parse_name(f"{key['dataset']}@{key['version']}")
        installed = manifest_io.read(cache.dataset_path(ref))
    except (OSError, ValueError, KeyError, TypeError, BrineliteError):
        return False
    return installed.fingerprint == key["fingerprint"]
