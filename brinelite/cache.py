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
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import platformdirs
from filelock import FileLock, Timeout

from .errors import AlreadyExistsError, CacheError, NotInstalledError
from .names import DatasetRef, Version, parse_version, suggest
from .redact import url_key

LOCK_TIMEOUT = 3600.0


def home() -> Path:
    """The cache root: ``$BRINELITE_HOME`` if set, else the user cache dir for brinelite."""
    configured = os.environ.get("BRINELITE_HOME")
    return (
        Path(configured).expanduser()
        if configured
        else Path(platformdirs.user_cache_dir("brinelite"))
    )


def _area(name: str) -> Path:
    path = home() / name
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheError(
            f"Cannot create the cache folder {path} ({exc.strerror}): "
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
    for child in tmp.iterdir() if tmp.is_dir() else ():
        pid = _owner(child)
        if pid is not None and not _running(pid):
            shutil.rmtree(child, ignore_errors=True)


def _owner(staged: Path) -> int | None:
    """The pid in a staging folder's name (``install-<pid>-…``), if it has one."""
    pid = staged.name.split("-")[1] if staged.name.count("-") >= 2 else ""
    return int(pid) if pid.isdigit() else None


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


@dataclass
class Cleaned:
    """What :func:`clean` did: bytes freed, and what it left because a live process holds it."""

    freed: int = 0
    skipped: list[Path] = field(default_factory=list)


def clean(also: Iterable[Path] = ()) -> Cleaned:
    """Remove partial downloads and abandoned staging folders, sparing those in use.

    A staging folder whose process still runs, and a download whose lock another process
    holds, are skipped (and listed), so cleaning never breaks a running install.

    Args:
        also: more files or folders to delete and count, found stale by other modules
            (``brinelite cache clean`` passes ``brinelite.prepared.stale_caches()``).

    Returns:
        The bytes freed and the paths skipped.

    Example::

        print(clean().freed)
    """
    done = Cleaned()
    for path in also:
        done.freed += _delete(path)
    tmp = home() / "tmp"
    for child in sorted(tmp.iterdir()) if tmp.is_dir() else ():
        pid = _owner(child)
        if pid is not None and _running(pid):
            done.skipped.append(child)
        else:
            done.freed += _delete(child)
    downloads = home() / "downloads"
    for child in sorted(downloads.iterdir()) if downloads.is_dir() else ():
        key = child.name.split("-", 1)[0]
        try:
            with lock(f"download-{key}", timeout=0):
                done.freed += _delete(child)
        except CacheError:  # another process holds it: a download in progress
            done.skipped.append(child)
    return done


def _delete(path: Path) -> int:
    """Delete a file or folder; return the bytes its files held."""
    if path.is_dir() and not path.is_symlink():
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
        shutil.rmtree(path, ignore_errors=True)
        return size
    size = path.lstat().st_size
    path.unlink(missing_ok=True)
    return size
