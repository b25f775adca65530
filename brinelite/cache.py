"""Where installed datasets live, and how they get there atomically.

Layout under :func:`home` (``$BRINELITE_HOME``, else the platform's user cache dir)::

    datasets/<scope>/<name>/<version>/   one installed version (manifest.json, rows.csv, files)
    tmp/                                 staging folders of installs in progress
    downloads/                           archives being downloaded (partial ones are resumed)
    locks/                               one lock file per dataset name and per download
    prepared/<key>/                      preprocessed samples of to_keras(prepare=...), see
                                         brinelite.prepared

A version appears in ``datasets/`` only by a single ``rename`` of a complete,
verified staging folder, so a reader never sees half a dataset and a failed or
killed install leaves ``datasets/`` exactly as it was.

``BRINELITE_HOME`` may point at a folder that holds other things. brinelite marks what it
creates: a cache folder it creates gets a ``CACHEDIR.TAG`` (the Cache Directory Tagging
Specification, honoured by backup tools), and each entry it makes has a name only brinelite
gives (``install-<pid>-…`` staging folders, ``prepared-<64 hex>`` prepared caches being
filled, ``<16 hex>-<file>`` downloads, ``<64 hex>`` prepared caches). :func:`clean` deletes
only such entries, never through a symbolic link, and lists everything else it left.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit

from filelock import FileLock, Timeout

from . import jsonio, settings
from .atomic import write_text
from .errors import AlreadyExistsError, CacheError, NotInstalledError, disk_advice
from .hashes import FileInfo, file_info
from .manifest import INSTALL_RECORD
from .names import DatasetRef, Version, parse_version, suggest
from .redact import url_key


def home() -> Path:
    """The cache root: ``$BRINELITE_HOME`` if set, else the user cache dir for brinelite."""
    return settings.cache_home()


LOCK_TIMEOUT = 3600.0
MARKER = "CACHEDIR.TAG"
_MARKER_TEXT = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This folder was created by brinelite (a dataset cache); `brinelite cache clean`\n"
    "# tidies it. See https://bford.info/cachedir/\n"
)
# A prepared cache being filled (brinelite.prepared.Filling): its folder in tmp/ and its lock
# share this name; no row added for FILLING_IDLE seconds and the lock free: it is abandoned.
FILLING = r"prepared-[0-9a-f]{64}"
FILLING_IDLE = 3600.0
# Why `clean` left an entry of its own (``Cleaned.skipped``), as `brinelite cache clean` says.
SKIP_STAGING = "in use by a running install, process {pid}"
SKIP_DOWNLOAD = "being downloaded: a running install holds its lock"
SKIP_FILLING_LOCKED = "being filled: a running process holds its lock"
SKIP_FILLING_RECENT = (
    f"a row was added in the last {FILLING_IDLE / 60:.0f} minutes: a run may still be filling it"
)
SKIP_FILLING_CHANGED = "it changed while being checked: a run is filling it"
# The names brinelite gives the entries of each area it cleans: nothing else is deleted.
_OWN = {
    "tmp": re.compile(r"(?:install|replaced|removed|prepared)-(\d+)-[A-Za-z0-9_]+|" + FILLING),
    "downloads": re.compile(r"[0-9a-f]{16}-.+"),
    "prepared": re.compile(r"[0-9a-f]{64}"),
}


def _area(name: str) -> Path:
    """The cache's ``name`` folder, created if missing (a cache folder created with it is
    marked with ``CACHEDIR.TAG``)."""
    root = home()
    path = root / name
    try:
        if not root.is_dir():
            with contextlib.suppress(FileExistsError):  # another process may create it first
                root.mkdir(parents=True)
                write_text(root / MARKER, _MARKER_TEXT)
        path.mkdir(exist_ok=True)
    except OSError as exc:
        raise CacheError(
            f"Cannot create the cache folder {path} ({disk_advice(exc)}): "
            "set BRINELITE_HOME to a writable folder."
        ) from exc
    return path


def datasets_root() -> Path:
    """The folder holding every installed dataset."""
    return home() / "datasets"


def downloads_dir() -> Path:
    """Where archives are downloaded (kept partial between attempts so they can resume)."""
    return _area("downloads")


def download_key(location: str) -> str:
    """What a download is known by: 16 hex digits of the sha256 of its full location.

    Every process fetching the same archive shares it (the lock, the part file), whatever
    name it installs the archive under.
    """
    return url_key(location)[:16]


def download_path(location: str) -> Path:
    """Where the archive at ``location`` is downloaded: ``downloads/<key>-<file name>``."""
    name = Path(urlsplit(location).path if "://" in location else location).name
    return downloads_dir() / f"{download_key(location)}-{name[-50:] or 'archive'}"


def download_lock(location: str, timeout: float = LOCK_TIMEOUT):
    """The lock a process holds while it fetches (and unpacks) the archive at ``location``."""
    return lock(f"download-{download_key(location)}", timeout)


@contextmanager
def shared_download(location: str) -> Iterator[SharedDownload]:
    """Hold the download lock of ``location`` as one of the processes that want its archive.

    Each process signs in (``locks/download-<key>.users/<pid>-<n>``) before it waits for the
    lock, so the one that fetches the archive knows who waits and keeps the verified archive
    for them (as huggingface_hub's blob cache does) instead of deleting it; the last one out
    deletes it. Six installs of one URL under six names download it once.

    Example::

        with shared_download(url) as shared:
            archive = shared.kept(sha256) or fetch(...)
    """
    users = _area("locks") / f"download-{download_key(location)}.users"
    users.mkdir(exist_ok=True)
    sign, name = tempfile.mkstemp(prefix=f"{os.getpid()}-", dir=users)
    os.close(sign)
    me = Path(name)
    try:
        with download_lock(location):
            shared = SharedDownload(download_path(location), me)
            try:
                yield shared
            finally:
                shared.settle()
    finally:
        me.unlink(missing_ok=True)


class SharedDownload:
    """The verified archive of one location, kept only while another process waits for it.

    ``downloads/<key>-<file>.kept.json`` says whom it is kept for and its sha256; only those
    processes reuse it, after hashing it again.
    """

    def __init__(self, archive: Path, me: Path) -> None:
        self.archive = archive
        self.record = archive.with_name(archive.name + ".kept.json")
        self.me = me
        self.sha256: str | None = None  # set once this process holds the verified archive

    def kept(self, sha256: str | None) -> FileInfo | None:
        """The archive another process fetched for this one (matching ``sha256`` if given)."""
        record = self._record()
        promised = record.get("sha256")
        if self.me.name not in record.get("for", ()) or sha256 not in (None, promised):
            return None
        try:
            info = file_info(self.archive)
        except OSError:
            return None
        if info.sha256 != promised:
            return None
        self.sha256 = info.sha256
        return info

    def settle(self) -> None:
        """Keep the archive for the processes still waiting, or delete it if none is."""
        sha256 = self.sha256 or self._record().get("sha256")
        waiting = self._waiting()
        if waiting and sha256 and self.archive.is_file():
            write_text(self.record, json.dumps({"sha256": sha256, "for": waiting}))
            return
        self.archive.unlink(missing_ok=True)
        self.record.unlink(missing_ok=True)

    def _record(self) -> dict:
        try:
            record = json.loads(self.record.read_text())
        except (OSError, ValueError):
            return {}
        return record if isinstance(record, dict) else {}

    def _waiting(self) -> list[str]:
        """The other processes signed in and still running (the signs of dead ones go)."""
        waiting = []
        for sign in self.me.parent.iterdir():
            pid = sign.name.split("-", 1)[0]
            if sign == self.me or not pid.isdigit():
                continue
            if _running(int(pid)):
                waiting.append(sign.name)
            else:
                sign.unlink(missing_ok=True)
        return sorted(waiting)


def dataset_path(ref: DatasetRef) -> Path:
    """The folder of one installed version (``ref`` must carry a version)."""
    if ref.version is None:
        raise ValueError("dataset_path needs a pinned version")
    return datasets_root() / ref.scope / ref.name / str(ref.version)


def installed_versions(ref: DatasetRef) -> list[Version]:
    """The installed versions of ``ref``'s dataset, oldest first."""
    folder = datasets_root() / ref.scope / ref.name
    versions = []
    for child in folder.iterdir() if folder.is_dir() else ():
        try:
            versions.append(parse_version(child.name))
        except ValueError:
            continue
    return sorted(versions)


def installed() -> list[DatasetRef]:
    """Every installed ``scope/name@version``, sorted by name then version."""
    root = datasets_root()
    refs = []
    for scope in sorted(root.iterdir()) if root.is_dir() else ():
        for name in sorted(scope.iterdir()) if scope.is_dir() else ():
            base = DatasetRef(scope.name, name.name)
            refs.extend(base.with_version(version) for version in installed_versions(base))
    return refs


def resolve_installed(ref: DatasetRef) -> DatasetRef:
    """Pin ``ref`` to the newest installed version (or check its pinned one is installed)."""
    versions = installed_versions(ref)
    if ref.version is not None and ref.version in versions:
        return ref
    if ref.version is None and versions:
        return ref.with_version(versions[-1])
    if versions:
        listed = ", ".join(str(v) for v in versions)
        raise NotInstalledError(
            f"Dataset {ref} is not installed (installed versions: {listed}); "
            f"run: brinelite install {ref}"
        )
    hint = suggest(ref.full_name, {r.full_name for r in installed()})
    raise NotInstalledError(f"Dataset {ref} is not installed; run: brinelite install {ref}.{hint}")


@contextmanager
def staging(prefix: str = "install-") -> Iterator[Path]:
    """A fresh folder inside the cache, removed on exit whatever happens.

    It lives on the same filesystem as ``datasets/`` so :func:`commit` is a rename.
    """
    _remove_abandoned()
    try:
        path = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=_area("tmp")))
    except OSError as exc:
        raise CacheError(f"Cannot create a staging folder in {home()}: {exc.strerror}.") from exc
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _remove_abandoned() -> None:
    """Delete staging folders left by killed processes (their pid no longer runs)."""
    tmp = home() / "tmp"
    for child in tmp.iterdir() if tmp.is_dir() and not tmp.is_symlink() else ():
        pid = _owner(child)
        if pid is not None and not _running(pid):
            shutil.rmtree(child, ignore_errors=True)


def _owner(staged: Path) -> int | None:
    """The pid in a staging folder's name (``install-<pid>-…``); None for any other entry."""
    match = _OWN["tmp"].fullmatch(staged.name)
    owned = match and match[1] and staged.is_dir() and not staged.is_symlink()
    return int(match[1]) if owned else None


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def lock(key: str, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the inter-process lock named ``key`` (e.g. ``scope/name``)."""
    path = _area("locks") / (key.replace("/", "--") + ".lock")
    try:
        with FileLock(path, timeout=timeout):
            yield
    except Timeout:
        raise CacheError(
            f"Another brinelite process has held the lock on {key} for over {timeout:.0f} s; "
            f"if none is running, delete {path}."
        ) from None


def commit(staged: Path, ref: DatasetRef, force: bool = False) -> Path:
    """Move a complete, verified dataset folder into place with one rename.

    Call with the dataset's :func:`lock` held. With ``force`` an installed copy is
    replaced (moved aside first, then deleted); without it an installed copy is an error.
    """
    target = dataset_path(ref)
    _make_readable(staged)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        if not force:
            raise AlreadyExistsError(
                f"Dataset {ref} is already installed; pass --force to reinstall it."
            )
        with staging("replaced-") as trash:
            os.rename(target, trash / "old")
            try:
                os.rename(staged, target)
            except OSError:
                os.rename(trash / "old", target)  # keep the installed copy
                raise
        return target
    try:
        os.rename(staged, target)
    except OSError:
        for empty in (target.parent, target.parent.parent):  # leave no empty name folders
            try:
                empty.rmdir()
            except OSError:
                break
        raise
    return target


def remove(ref: DatasetRef) -> None:
    """Uninstall one version: move it out of ``datasets/`` in one rename, then delete it."""
    target = dataset_path(ref)
    if not target.exists():
        raise NotInstalledError(f"Dataset {ref} is not installed.")
    with staging("removed-") as trash:
        os.rename(target, trash / "old")
    for empty in (target.parent, target.parent.parent):
        try:
            empty.rmdir()
        except OSError:
            break


def _make_readable(folder: Path) -> None:
    """Let other users read an install (temporary folders are created private)."""
    for root, _dirs, files in os.walk(folder):
        os.chmod(root, 0o755)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)


def size_on_disk(path: Path) -> int:
    """Bytes held by the files under ``path`` (or the file itself), never through a link."""
    if path.is_symlink() or not path.is_dir():
        return path.lstat().st_size
    total = 0
    for root, _dirs, files in os.walk(path):  # os.walk does not follow links to folders
        for name in files:
            total += os.lstat(os.path.join(root, name)).st_size
    return total


@dataclass
class Cleaned:
    """What :func:`clean` did.

    ``removed`` holds each deleted entry with the bytes it freed; ``skipped`` each entry left
    because a live process holds it or may still use it, with the reason (``SKIP_*``);
    ``foreign`` what brinelite did not create (or is a symbolic link), left alone. Paths are
    relative to the cache.
    """

    removed: list[tuple[Path, int]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    foreign: list[Path] = field(default_factory=list)

    @property
    def freed(self) -> int:
        """Bytes freed in all."""
        return sum(size for _path, size in self.removed)


def clean(also: Iterable[Path] = ()) -> Cleaned:
    """Remove partial downloads and abandoned staging folders, sparing those in use.

    Only entries brinelite created are deleted (see the module's docstring): anything else in
    ``tmp/``, ``downloads/`` or ``prepared/``, any symbolic link, and any area that is itself
    a link is left and listed in ``Cleaned.foreign``. A staging folder whose process still
    runs, and a download whose lock another process holds, are skipped (and listed), so
    cleaning never breaks a running install.

    Args:
        also: stale prepared caches to delete too, found by another module
            (``brinelite cache clean`` passes ``brinelite.prepared.stale_caches()``); only
            those that are brinelite's entries of ``prepared/`` are.

    Returns:
        What was removed (with the bytes each freed) and what was left.

    Example::

        print(clean().freed)
    """
    done = Cleaned()
    root = home()
    for path in also:
        if _own(done, root / "prepared", path):
            _delete(done, path)
    for child in _entries(done, root / "tmp"):
        pid = _owner(child)
        if re.fullmatch(FILLING, child.name):
            _delete_filling(done, child)
        elif pid is not None and _running(pid):
            done.skipped.append((child.relative_to(root), SKIP_STAGING.format(pid=pid)))
        else:
            _delete(done, child)
    for child in _entries(done, root / "downloads"):
        key = child.name.split("-", 1)[0]
        try:
            with lock(f"download-{key}", timeout=0):
                _delete(done, child)
        except CacheError:  # another process holds it: a download in progress
            done.skipped.append((child.relative_to(root), SKIP_DOWNLOAD))
    return done


def _delete_filling(done: Cleaned, folder: Path) -> None:
    """Delete a prepared cache's filling left by a killed run; skip one a run may still fill.

    A filling run holds the folder's lock only while it adds a row, so a folder is in use
    while its lock is held or a row was added within ``FILLING_IDLE`` seconds.
    """
    try:
        with lock(folder.name, timeout=0):
            newest = max(entry.stat().st_mtime for entry in [folder, *folder.iterdir()])
            if time.time() - newest >= FILLING_IDLE:
                _delete(done, folder)
                return
            reason = SKIP_FILLING_RECENT
    except CacheError:  # the lock is held: a row is being added
        reason = SKIP_FILLING_LOCKED
    except OSError:  # an entry went or came while it was looked at: a run is at work
        reason = SKIP_FILLING_CHANGED
    done.skipped.append((folder.relative_to(home()), reason))


def _entries(done: Cleaned, area: Path) -> list[Path]:
    """The entries of ``area`` brinelite made; the others are listed in ``done.foreign``."""
    if area.is_symlink():
        done.foreign.append(area.relative_to(home()))
        return []
    children = sorted(area.iterdir()) if area.is_dir() else []
    return [child for child in children if child.name != MARKER and _own(done, area, child)]


def _own(done: Cleaned, area: Path, path: Path) -> bool:
    """Whether ``path`` is an entry brinelite made in ``area`` (else it joins the foreign)."""
    pattern = _OWN[area.name]
    mine = (
        path.parent == area
        and not area.is_symlink()
        and not path.is_symlink()
        and pattern.fullmatch(path.name) is not None
        and (path.is_dir() if area.name != "downloads" else path.is_file())
    )
    if not mine and path.name != MARKER:
        done.foreign.append(path.relative_to(home()) if path.is_relative_to(home()) else path)
    return mine


def _delete(done: Cleaned, path: Path) -> None:
    """Delete a file or folder (links inside are removed, never followed) and record it."""
    size = size_on_disk(path)
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    done.removed.append((path.relative_to(home()), size))


@dataclass(frozen=True)
class InstallRecord:
    """What ``install.json`` beside an installed dataset's manifest says (it is not hashed).

    Written once by the installer; read by ``info``, ``lock``, ``Dataset.sha256`` and the
    installer's "already installed" check, so a new field is one line here.

    Example::

        InstallRecord.read(cache.dataset_path(ref)).sha256  # "" for a folder install
    """

    source: str = ""  # the source as it may be printed (credentials redacted)
    source_sha256: str = ""  # the sha256 of the source's URL or path, to recognise it again
    sha256: str = ""  # the archive's sha256; "" when installed from a folder
    registry: str = ""  # the registry a name was resolved in, if any
    installed: str = ""  # when, as ISO 8601 UTC

    @classmethod
    def read(cls, folder: Path) -> InstallRecord:
        """The record in ``folder``; an empty one if it is missing or unreadable."""
        try:
            data = jsonio.loads((folder / INSTALL_RECORD).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls()
        if not isinstance(data, dict):
            return cls()
        return cls(
            **{f.name: data[f.name] for f in fields(cls) if isinstance(data.get(f.name), str)}
        )

    def write(self, folder: Path) -> None:
        """Write the record into ``folder`` (atomically); empty fields are left out."""
        record = {key: value for key, value in asdict(self).items() if value}
        write_text(folder / INSTALL_RECORD, json.dumps(record, indent=2) + "\n")
