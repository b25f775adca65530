"""Installing a dataset: the one path from a source to a verified folder in the cache.

source → (resolve a name in the registries) → download or open the archive
→ safe extraction into a staging folder inside the cache → verify every file
against the manifest (or write a manifest for a plain images/ + masks/ tree)
→ one rename into ``datasets/``. Each step raises a typed error and cleans up
after itself; nothing under ``datasets/`` changes until the final rename.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from . import archive, cache, download, registry, s3
from . import manifest as manifest_io
from .build import scan_pairs, stage
from .errors import AlreadyExistsError, BrineliteError, CacheError, IntegrityError, ManifestError
from .hashes import file_info
from .manifest import Manifest
from .names import DatasetRef, is_name, parse_name
from .progress import bar

DEFAULT_VERSION = "1.0.0"


@dataclass(frozen=True)
class Installed:
    """The outcome of :func:`install`."""

    ref: DatasetRef
    path: Path
    sha256: str
    source: str
    already: bool = False


@dataclass(frozen=True)
class _Plan:
    """A source, once classified: where the bytes are and what is known in advance."""

    source: str
    location: str
    kind: str  # "url", "s3", "archive" or "folder"
    ref: DatasetRef | None
    sha256: str | None
    registry: str | None = None  # the registry a name was resolved in
    headers: dict[str, str] = field(default_factory=dict)  # its auth header, for its host only


def _plan(source: str, name: str | None, sha256: str | None) -> _Plan:
    given = parse_name(name) if name else None
    if source.startswith(("http://", "https://", "s3://")):
        return _Plan(source, source, _kind(source), given, sha256)
    path = Path(source).expanduser()
    if path.is_dir():
        return _Plan(source, str(path.resolve()), "folder", given, sha256)
    if path.is_file():
        return _Plan(source, str(path.resolve()), "archive", given, sha256)
    if is_name(source):
        found = registry.resolve(parse_name(source))
        return _Plan(
            source,
            found.location,
            _kind(found.location),
            found.ref,
            sha256 or found.sha256,
            found.registry,
            found.headers,
        )
    raise BrineliteError(
        f"{source!r} is not a dataset name (scope/name[@version]), an http(s) URL, "
        "or an existing archive or folder."
    )


def _kind(location: str) -> str:
    """How to get the bytes of an archive location: "url", "s3" or "archive" (a local file)."""
    if location.startswith("s3://"):
        return "s3"
    return "url" if location.startswith(("http://", "https://")) else "archive"


def install(
    source: str,
    *,
    name: str | None = None,
    sha256: str | None = None,
    force: bool = False,
    quiet: bool = False,
) -> Installed:
    """Install ``source`` into the cache and return where it landed.

    ``source`` is ``scope/name[@version]`` (looked up in the registries), an
    http(s) URL or path of an archive (.tar.gz, .tgz, .tar, .zip), or a dataset
    folder. ``name`` names a source that has no manifest (a plain ``images/`` +
    ``masks/`` tree); ``sha256`` pins the archive's hash; ``force`` reinstalls.
    Installing what is already installed does nothing and says so.
    """
    plan = _plan(source, name, sha256)
    key = (
        plan.ref.full_name
        if plan.ref
        else "source-" + hashlib.sha256(plan.location.encode()).hexdigest()[:16]
    )
    try:
        with cache.lock(key):
            done = None if force else _already_installed(plan)
            return done or _install_locked(plan, force, quiet)
    except OSError as exc:
        raise CacheError(
            f"Installing {source} failed while writing to {cache.home()} ({exc.strerror}); "
            "nothing was installed. Free some space or set BRINELITE_HOME to a writable folder."
        ) from exc


def _already_installed(plan: _Plan) -> Installed | None:
    """The installed copy of ``plan``'s dataset, if the same thing is installed already."""
    if plan.ref is not None and plan.ref.version is not None:
        path = cache.dataset_path(plan.ref)
        return _record(path, plan, already=True) if path.is_dir() else None
    if plan.kind not in ("url", "s3"):
        return None
    for ref in cache.installed():
        record = read_install_record(cache.dataset_path(ref))
        if record.get("source") == plan.location and plan.sha256 in (None, record.get("sha256")):
            return _record(cache.dataset_path(ref), plan, already=True)
    return None


def _record(path: Path, plan: _Plan, already: bool) -> Installed:
    record = read_install_record(path)
    ref = manifest_io.read(path).ref
    return Installed(
        ref, path, record.get("sha256", ""), record.get("source", plan.source), already
    )


def read_install_record(path: Path) -> dict:
    """What ``install.json`` of an installed dataset says (source, archive sha256, time)."""
    try:
        return json.loads((path / manifest_io.INSTALL_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _install_locked(plan: _Plan, force: bool, quiet: bool) -> Installed:
    with cache.staging() as staging:
        if plan.kind == "folder":
            root, manifest, digest = _stage_folder(plan, staging / "dataset", quiet)
        else:
            archive_path = _fetch(plan, quiet)
            digest = file_info(archive_path).sha256 if plan.kind == "archive" else plan.sha256
            if plan.sha256 and digest != plan.sha256:
                raise IntegrityError(
                    f"Archive {plan.location} has sha256 {digest}, expected {plan.sha256}; "
                    "not installed."
                )
            try:
                root, manifest = _unpack(plan, archive_path, staging, quiet)
            finally:  # a downloaded archive is deleted whether it installs or is refused
                if plan.kind in ("url", "s3"):
                    archive_path.unlink(missing_ok=True)
        ref = manifest.ref
        if plan.ref is not None and plan.ref.version is not None and plan.ref != ref:
            raise ManifestError(f"{plan.source} was expected to hold {plan.ref} but holds {ref}.")
        record = {
            "source": plan.location,
            "sha256": digest or "",
            **({"registry": plan.registry} if plan.registry else {}),
            "installed": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        (root / manifest_io.INSTALL_RECORD).write_text(json.dumps(record, indent=2) + "\n")
        # The dataset's own lock is already held when its name was known up front.
        with cache.lock(ref.full_name) if plan.ref is None else nullcontext():
            if not force and _same_installed(manifest):
                return _record(cache.dataset_path(ref), plan, already=True)
            path = cache.commit(root, ref, force=force)
    return Installed(ref, path, digest or "", plan.location)


def _same_installed(manifest: Manifest) -> bool:
    """Whether exactly this dataset is installed; a different one under its name is an error."""
    path = cache.dataset_path(manifest.ref)
    if not path.is_dir():
        return False
    if manifest_io.read(path).fingerprint == manifest.fingerprint:
        return True
    raise AlreadyExistsError(
        f"A different {manifest.ref} is already installed; pass --force to replace it."
    )


def _fetch(plan: _Plan, quiet: bool) -> Path:
    """A local path to the archive: the file itself, or a download into the cache."""
    if plan.kind == "archive":
        return Path(plan.location)
    digest = hashlib.sha256(plan.location.encode()).hexdigest()[:16]
    dest = cache.downloads_dir() / f"{digest}-{Path(plan.location.split('?')[0]).name or 'archive'}"
    with bar(f"Downloading {plan.source}", quiet=quiet) as progress:
        if plan.kind == "s3":
            return s3.fetch(plan.location, dest, sha256=plan.sha256, progress=progress)
        return download.fetch(
            plan.location, dest, sha256=plan.sha256, headers=plan.headers, progress=progress
        ).path


def _unpack(plan: _Plan, archive_path: Path, staging: Path, quiet: bool) -> tuple[Path, Manifest]:
    """Extract safely, then verify the manifest (or write one for a plain tree)."""
    extracted = staging / "extracted"
    extracted.mkdir()
    size = archive_path.stat().st_size
    with bar(f"Extracting {plan.source}", quiet=quiet) as progress:
        infos = archive.extract(
            archive_path, extracted, max_bytes=archive.default_limit(size), progress=progress
        )
    root, prefix = _dataset_root(extracted)
    if not (root / manifest_io.MANIFEST).is_file():
        return _adopt(plan, root, staging / "dataset", quiet)
    manifest = manifest_io.read(root)
    known = {path[len(prefix) :]: info for path, info in infos.items() if path.startswith(prefix)}
    manifest_io.verify(root, manifest, known)
    return root, manifest


def _dataset_root(extracted: Path) -> tuple[Path, str]:
    """The folder holding the dataset: the top, or its only sub-folder (archives of a folder)."""
    children = list(extracted.iterdir())
    if len(children) == 1 and children[0].is_dir() and children[0].name not in ("images", "masks"):
        return children[0], children[0].name + "/"
    return extracted, ""


def _adopt(plan: _Plan, root: Path, dest: Path, quiet: bool) -> tuple[Path, Manifest]:
    """Turn a tree without manifest (images/ + masks/) into a dataset, named by ``--name``."""
    if plan.ref is None:
        raise ManifestError(
            f"{plan.source} holds no manifest.json; to install a plain images/ + masks/ tree, "
            "name it: brinelite install SOURCE --name scope/name[@version]."
        )
    version = str(plan.ref.version) if plan.ref.version else DEFAULT_VERSION
    dest.mkdir()
    with bar("Checking images", unit="items", quiet=quiet) as progress:
        manifest = stage(scan_pairs(root), dest, plan.ref.full_name, version, progress=progress)
    return dest, manifest


def _stage_folder(plan: _Plan, dest: Path, quiet: bool) -> tuple[Path, Manifest, str]:
    """Copy a dataset folder (verifying it) or adopt a plain images/ + masks/ folder."""
    folder = Path(plan.location)
    if not (folder / manifest_io.MANIFEST).is_file():
        root, manifest = _adopt(plan, folder, dest, quiet)
        return root, manifest, ""
    manifest = manifest_io.read(folder)
    shutil.copytree(folder, dest, ignore=shutil.ignore_patterns(manifest_io.INSTALL_RECORD))
    manifest_io.verify(dest, manifest)
    return dest, manifest, ""
