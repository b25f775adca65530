"""Safe extraction and reproducible creation of dataset archives (.tar, .tar.gz, .zip).

:func:`extract` trusts nothing in an archive. It writes every regular file itself under
``dest`` and refuses, naming the entry, anything that could land outside ``dest`` or is not
a plain file or folder: absolute or ``..`` paths, links, devices, duplicates, names that are
not UTF-8. It hashes each file while writing it, so the caller can check the result against
a manifest without reading the files again, and it stops an archive that expands past a
ceiling as soon as the bytes written cross it (headers can lie about sizes).

:func:`create` writes a byte-for-byte reproducible ``.tar.gz``: the same files give the same
sha256 whatever their timestamps, owners or order on disk.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import IO

from . import settings
from .atomic import atomic_write
from .errors import ArchiveError
from .hashes import CHUNK, FileInfo
from .paths import UnsafePathError, safe_relpath
from .progress import Progress, Silent

LIMIT_ENV = "BRINELITE_MAX_EXTRACT_BYTES"

_MIB = 1024**2
_GIB = 1024**3
_TAR_FILE_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)
# What the standard library raises for damaged data; never shown to users as a traceback.
_CORRUPT = (tarfile.TarError, zipfile.BadZipFile, gzip.BadGzipFile, zlib.error, EOFError)


def default_limit(archive_size: int) -> int:
    """The most bytes an archive of ``archive_size`` bytes may expand to.

    100 times its size, at least 512 MiB and at most 100 GiB: far above what image datasets
    compress by, far below what fills a disk. ``BRINELITE_MAX_EXTRACT_BYTES`` replaces it
    for archives that are legitimately bigger.
    """
    configured = settings.max_extract_bytes()
    if configured is None:
        return min(max(100 * archive_size, 512 * _MIB), 100 * _GIB)
    return configured


def extract(
    archive: Path,
    dest: Path,
    *,
    max_bytes: int | None = None,
    progress: Progress | None = None,
) -> dict[str, FileInfo]:
    """Extract ``archive`` into the empty folder ``dest``; return each file's size and sha256.

    The kind of archive is told from its first bytes, not its name. ``max_bytes`` (default
    :func:`default_limit`) caps the bytes written. Progress counts the bytes read from
    ``archive`` against its size. On error, whatever was written stays in ``dest`` for the
    caller to delete; nothing is ever written outside it.
    """
    if any(dest.iterdir()):
        raise ValueError(f"extract() needs an empty folder, but {dest} is not empty")
    size = archive.stat().st_size
    progress = progress or Silent()
    progress.start(size)
    writer = _Writer(archive, dest, default_limit(size) if max_bytes is None else max_bytes)
    with archive.open("rb") as raw:
        kind = _kind(archive, raw.read(512))
        raw.seek(0)
        source = _Counting(raw, progress)
        try:
            if kind == "zip":
                _extract_zip(source, writer)
            else:
                _extract_tar(gzip.GzipFile(fileobj=source) if kind == "gzip" else source, writer)
        except _CORRUPT as exc:
            raise ArchiveError(
                f"Archive {archive} is corrupt or truncated: {exc}; download or build it again."
            ) from exc
    return writer.files


def create(folder: Path, out: Path, *, progress: Progress | None = None) -> str:
    """Write a reproducible .tar.gz of everything under ``folder`` to ``out``; return its sha256.

    Members are relative to ``folder`` and sorted; owner, group and times are zeroed, modes
    are 0o644 for files and 0o755 for folders, and the gzip header holds no name or time, so
    the same files always give the same bytes. ``out`` appears whole or not at all
    (:func:`brinelite.atomic.atomic_write`). Progress counts the bytes of the files read.
    """
    members = tree(folder)
    progress = progress or Silent()
    progress.start(sum(path.stat().st_size for _, path in members if path.is_file()))
    with atomic_write(out, "wb") as raw:
        sink = _Hashing(raw)
        with (
            gzip.GzipFile(filename="", mode="wb", fileobj=sink, mtime=0) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT, copybufsize=CHUNK) as tar,
        ):
            for name, path in members:
                _add(tar, name, path, progress)
    return sink.sha256.hexdigest()


def _kind(archive: Path, head: bytes) -> str:
    """``"gzip"``, ``"zip"`` or ``"tar"``, from an archive's first 512 bytes; refuse others."""
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head[257:262] == b"ustar":
        return "tar"
    if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        raise ArchiveError(f"{archive} is an HTML page, not an archive: check the URL.")
    raise ArchiveError(
        f"{archive} is not a .tar, .tar.gz or .zip archive: check the file or the URL it came from."
    )


def _extract_tar(stream: IO[bytes], writer: _Writer) -> None:
    """Extract a tar stream member by member, then read to its end (checks a gzip trailer's CRC)."""
    budget = _Budget(stream, writer)
    options = {"encoding": "utf-8", "errors": "surrogateescape", "bufsize": CHUNK}
    with tarfile.open(fileobj=budget, mode="r|", **options) as tar:
        for member in tar:
            if member.isdir():
                writer.directory(member.name)
            elif member.type in _TAR_FILE_TYPES:
                writer.file(member.name, tar.extractfile(member))
            else:
                raise writer.refuse(member.name, _tar_type(member))
    while budget.read(CHUNK):
        pass


def _tar_type(member: tarfile.TarInfo) -> str:
    """Why a tar member that is neither a regular file nor a folder is refused."""
    if member.issym():
        return "is a symbolic link"
    if member.islnk():
        return "is a hard link"
    if member.ischr() or member.isblk():
        return "is a device file"
    if member.isfifo():
        return "is a FIFO"
    return f"has an unsupported entry type {member.type!r}"


def _extract_zip(source: IO[bytes], writer: _Writer) -> None:
    """Extract a zip member by member, refusing links, special files and encrypted entries."""
    try:
        zf = zipfile.ZipFile(source)
    except UnicodeDecodeError as exc:  # zipfile decodes names flagged as UTF-8 strictly
        raise writer.refuse(exc.object, "is not valid UTF-8") from exc
    with zf:
        for info in zf.infolist():
            name = _zip_name(info, writer)
            kind = stat.S_IFMT(info.external_attr >> 16)
            if info.is_dir() and kind in (0, stat.S_IFDIR):
                writer.directory(name)
            elif kind == stat.S_IFLNK:
                raise writer.refuse(name, "is a symbolic link")
            elif kind not in (0, stat.S_IFREG):
                raise writer.refuse(name, "is a device file, FIFO or socket")
            elif info.flag_bits & 0x1:
                raise writer.refuse(name, "is encrypted")
            else:
                try:
                    data = zf.open(info)
                except NotImplementedError as exc:
                    raise writer.refuse(name, "uses an unsupported compression method") from exc
                with data:
                    writer.file(name, data)


def _zip_name(info: zipfile.ZipInfo, writer: _Writer) -> str:
    """A zip entry's name as UTF-8: names without the UTF-8 flag are often UTF-8 anyway."""
    if info.flag_bits & 0x800:
        return info.filename
    raw = info.filename.encode("cp437")  # undoes zipfile's cp437 decoding exactly
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise writer.refuse(raw, "is not valid UTF-8") from None


class _Writer:
    """Checks entry names and writes them under ``dest``, counting bytes against a ceiling."""

    def __init__(self, archive: Path, dest: Path, limit: int) -> None:
        self.archive = archive
        self.dest = dest
        self.limit = limit
        self.written = 0
        self.files: dict[str, FileInfo] = {}
        self._dirs: set[str] = set()
        self._seen: set[str] = set()

    def directory(self, name: str) -> None:
        """Create the folder ``name`` and its parents."""
        path = self._claim(name)
        if path:
            self._make_dirs(name, path)

    def file(self, name: str, data: IO[bytes]) -> None:
        """Write ``data`` to the new file ``name`` (mode 0o644) while hashing it."""
        path = self._claim(name)
        if not path:
            raise self.refuse(name, "is not a usable file name")
        if path in self._dirs:
            raise self.refuse(name, "is both a folder and a file")
        parent, _, _ = path.rpartition("/")
        if parent:
            self._make_dirs(name, parent)
        hasher = hashlib.sha256()
        size = 0
        try:
            fd = os.open(self.dest / path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise self.refuse(name, "clashes with another entry on this file system") from None
        with open(fd, "wb") as out:
            os.fchmod(fd, 0o644)
            while chunk := data.read(CHUNK):
                if self.written + len(chunk) > self.limit:
                    raise self.too_big()
                out.write(chunk)
                hasher.update(chunk)
                size += len(chunk)
                self.written += len(chunk)
        self.files[path] = FileInfo(size, hasher.hexdigest())

    def refuse(self, name: str | bytes, reason: str) -> ArchiveError:
        """The error for an entry that is unsafe or unsupported (``name`` as bytes if not UTF-8)."""
        return ArchiveError(
            f"Refusing to extract {self.archive}: entry {name!r} {reason}; "
            "rebuild the archive without it."
        )

    def too_big(self) -> ArchiveError:
        """The error for an archive that expands past the ceiling."""
        return ArchiveError(
            f"Archive {self.archive} expands past the limit of {self.limit:,} bytes; "
            f"if you trust it, set {LIMIT_ENV} to a larger number of bytes."
        )

    def _claim(self, name: str) -> str:
        """``name`` as a clean relative POSIX path, seen for the first time and unable to escape."""
        try:
            path = safe_relpath(name, normalise=True)
        except UnsafePathError as exc:
            shown = name.encode("utf-8", "surrogateescape") if "UTF-8" in exc.reason else name
            raise self.refuse(shown, exc.reason) from None
        if path in self._seen:
            raise self.refuse(name, "appears twice")
        if path:
            self._seen.add(path)
        return path

    def _make_dirs(self, name: str, path: str) -> None:
        """Create the folder ``path`` and its missing parents (mode 0o755)."""
        parts = path.split("/")
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            if prefix in self._dirs:
                continue
            if prefix in self.files:
                raise self.refuse(name, f"needs {prefix!r} to be a folder, but it is a file")
            try:
                os.mkdir(self.dest / prefix, 0o755)
            except FileExistsError:
                raise self.refuse(name, "clashes with another entry on this file system") from None
            os.chmod(self.dest / prefix, 0o755)
            self._dirs.add(prefix)


class _Counting:
    """A binary file wrapper that reports every byte read to a :class:`Progress`."""

    def __init__(self, raw: IO[bytes], progress: Progress) -> None:
        self._raw = raw
        self._progress = progress

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._progress.advance(len(data))
        return data

    def __getattr__(self, name: str):
        return getattr(self._raw, name)  # seek, tell and seekable, which zipfile needs


class _Budget:
    """The uncompressed tar stream, cut off at twice the extraction limit.

    Headers, padding and data after the end of the tar are read but never written, so the
    limit on bytes written alone would not stop a bomb hidden in them.
    """

    def __init__(self, stream: IO[bytes], writer: _Writer) -> None:
        self._stream = stream
        self._writer = writer
        self._left = 2 * writer.limit

    def read(self, size: int) -> bytes:
        data = self._stream.read(size)
        self._left -= len(data)
        if self._left < 0:
            raise self._writer.too_big()
        return data


class _Hashing:
    """A write-only file wrapper that hashes everything written through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.sha256 = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        return self._raw.write(data)

    def flush(self) -> None:
        self._raw.flush()


def tree(folder: Path) -> list[tuple[str, Path]]:
    """Every file and folder under ``folder`` as (relative POSIX name, path), sorted by name.

    What :func:`create` archives, and the rule it holds a folder to: a symbolic link or a
    special file anywhere is an :class:`ArchiveError`, so nothing is taken from outside.

    Example: ``[name for name, _ in tree(Path("cells"))]`` -> ``["images", "images/a.png", ...]``.
    """
    found = []
    pending = [folder]
    while pending:
        for path in pending.pop().iterdir():
            if path.is_symlink():
                raise ArchiveError(
                    f"Cannot archive {folder}: {path} is a symbolic link; "
                    "replace it with a copy of what it points to."
                )
            if path.is_dir():
                pending.append(path)
            elif not path.is_file():
                raise ArchiveError(
                    f"Cannot archive {folder}: {path} is not a regular file or folder; remove it."
                )
            found.append((path.relative_to(folder).as_posix(), path))
    return sorted(found)


def _add(tar: tarfile.TarFile, name: str, path: Path, progress: Progress) -> None:
    """Add one file or folder; TarInfo's defaults already zero owner, group and mtime."""
    info = tarfile.TarInfo(name)
    if path.is_dir():
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        tar.addfile(info)
        return
    info.mode = 0o644
    info.size = path.stat().st_size
    with path.open("rb") as data:
        tar.addfile(info, _Counting(data, progress))
