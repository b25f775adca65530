"""Installing a dataset: the one path from a source to a verified folder in the cache.

source → (resolve a name in the registries) → fetch the archive (``download.fetch``, for
URLs and local files alike) → safe extraction into a staging folder inside the cache →
verify every file against the manifest (or write a manifest for a plain images/ + masks/
tree) → one rename into ``datasets/``. Each step raises a typed error and cleans up after
itself; nothing under ``datasets/`` changes until the final rename.

Processes installing the same source share one lock and the verified archive
(``cache.shared_download``), so an archive is fetched once however many names it is installed
under; the dataset's own lock guards the final rename. An installed pinned version never
needs a registry.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from . import archive, cache, download, registry, settings
from . import manifest as manifest_io
from .build import scan_pairs, stage
from .errors import (
    AlreadyExistsError,
    BrineliteError,
    CacheError,
    DatasetNotFoundError,
    IntegrityError,
    ManifestError,
    OfflineError,
    UnreachableError,
    disk_advice,
)
from .manifest import Manifest
from .names import DatasetRef, is_name, parse_name
from .progress import bar
from .redact import redact_url, url_key

DEFAULT_VERSION = "1.0.0"
URL_SCHEMES = ("http://", "https://", "s3://")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Installed:
    """The outcome of :func:`install`; ``note`` says when installed data stood in for a lookup.

    ``sha256`` is the archive's ('' for a folder, which has none); ``fingerprint`` is the
    manifest's, what a folder install is pinned by.
    """

    ref: DatasetRef
    path: Path
    sha256: str
    source: str
    already: bool = False
    note: str = ""
    skipped: tuple[str, ...] = ()  # registries passed over on the way (unreachable, malformed)
    fingerprint: str = ""


@dataclass(frozen=True)
class _Plan:
    """A source, once classified: where the bytes are and what is known in advance."""

    shown: str  # the source as it may be printed (credentials redacted)
    location: str
    kind: str  # "url" (http(s)/s3), "archive" (a local file) or "folder"
    ref: DatasetRef | None
    sha256: str | None  # the archive's expected sha256: the user's pin or the registry's
    pins: _Pins
    size: int | None = None  # the archive's size as its registry index declares it
    named: bool = False  # ref came from --name (else from a registry)
    registry: str | None = None  # the registry a name was resolved in
    headers: dict[str, str] = field(default_factory=dict)  # its auth header, for its host only
    skipped: tuple[str, ...] = ()  # registries passed over while resolving
    binary: bool = False  # a tree without manifest: masks are binary even if they look like ids


@dataclass(frozen=True)
class _Pins:
    """What the user pinned: the archive's sha256 and the dataset's fingerprint."""

    sha256: str | None = None
    fingerprint: str | None = None


def sha256_hex(value: str | None, what: str = "--sha256") -> str | None:
    """``value`` as a lower-case sha256, or a one-line error if it is not 64 hex digits.

    >>> sha256_hex("AB" * 32) == "ab" * 32
    True
    """
    if value is None:
        return None
    digest = value.strip().lower()
    if not is_sha256(digest):
        raise BrineliteError(f"{what} {value[:80]!r} is not a sha256 (64 hex digits).")
    return digest


def is_sha256(value: object) -> bool:
    """Whether ``value`` is a sha256 as brinelite stores it: 64 lower-case hex digits."""
    return isinstance(value, str) and _SHA256.fullmatch(value) is not None


def install(
    source: str,
    *,
    name: str | None = None,
    sha256: str | None = None,
    fingerprint: str | None = None,
    force: bool = False,
    quiet: bool = False,
    binary: bool = False,
) -> Installed:
    """Install ``source`` into the cache and return where it landed.

    Args:
        source: ``scope/name[@version]`` (always looked up in the registries, even when a
            folder of that name exists), an http(s)/s3 URL, or the path of an archive
            (.tar.gz, .tgz, .tar, .zip) or a dataset folder (``./lab/cells`` or an absolute
            path when it would read as a name).
        name: names a source that has no manifest (a plain ``images/`` + ``masks/`` tree);
            for a source with one, it must agree with the manifest's name.
        sha256: pins the archive's hash (any case); checked against an installed copy too.
            Refused for a folder, which has no archive to check it against.
        fingerprint: pins the dataset's manifest fingerprint (as ``brinelite.lock`` does).
        force: reinstall even if installed.
        quiet: no progress bars.
        binary: for a source without manifest, read the masks as binary even when they look
            like class ids (as ``brinelite build --binary``); without it such masks are refused
            with a skeleton ``classes.json`` (:class:`~brinelite.errors.LabelMapError`).

    Returns:
        :class:`Installed`, with the archive's sha256 (empty for a folder). Installing what
        is already installed does nothing and says so. An installed pinned version is
        found without any registry; unpinned, with ``BRINELITE_OFFLINE`` set or no registry
        reachable, the newest installed version is used (``Installed.note`` says so).

    Example: ``install("demo/membrane@1.0.0").path``.
    """
    pins = _Pins(sha256_hex(sha256), sha256_hex(fingerprint, "fingerprint"))
    try:
        plan = _plan(source, name, pins, force)
        if isinstance(plan, Installed):
            return plan
        plan = replace(plan, binary=binary)
        with cache.shared_download(plan.location) as shared:
            done = None if force else _already_installed(plan)
            return done or _install_locked(plan, shared, force, quiet)
    except OSError as exc:
        raise CacheError(
            f"Installing {redact_url(source)} failed while writing to {cache.home()} "
            f"({disk_advice(exc)}); nothing was installed. "
            "Set BRINELITE_HOME to another folder if this one cannot hold it."
        ) from exc


def _plan(source: str, name: str | None, pins: _Pins, force: bool) -> _Plan | Installed:
    """Classify ``source``; a name installed already (or all one can use) is returned as is.

    A name is a name first: ``lab/cells@1.0.0`` goes to the registries even if a folder of
    that name sits in the current directory (that folder is ``./lab/cells@1.0.0``).
    """
    given = parse_name(name) if name else None
    shown = redact_url(source)
    if source.startswith(URL_SCHEMES):
        _check_url(source, shown)
        return _Plan(shown, source, "url", given, pins.sha256, pins, named=given is not None)
    if is_name(source):
        return _from_name(source, pins, force)
    path = Path(source).expanduser()
    kind = "folder" if os.path.isdir(path) else "archive" if os.path.isfile(path) else None
    if kind is None:
        raise BrineliteError(
            f"{shown[:300]!r} is not a dataset name (scope/name[@version]), an http(s) or s3 "
            "URL, or an existing archive or folder (write a relative path as ./path)."
        )
    if kind == "folder" and pins.sha256 is not None:
        raise BrineliteError(
            f"--sha256 pins an archive, but {shown} is a folder: there is no archive to check "
            "it against. Drop --sha256 (a folder install prints its fingerprint), or build an "
            "archive and install that."
        )
    return _Plan(
        shown, str(path.resolve()), kind, given, pins.sha256, pins, named=given is not None
    )


def _check_url(url: str, shown: str) -> None:
    """Refuse a URL that cannot be parsed (``http://[::1``, a port of letters) in one line."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a malformed port raises here
    except ValueError as exc:
        raise BrineliteError(f"{shown[:300]!r} is not a valid URL ({exc}).") from None
    if not parts.hostname:
        raise BrineliteError(f"{shown[:300]!r} is not a valid URL: it names no host.")


def _from_name(source: str, pins: _Pins, force: bool) -> _Plan | Installed:
    """A name from the registries; a same-named path here is only mentioned in the error."""
    try:
        return _from_registry(parse_name(source), pins, force)
    except DatasetNotFoundError as exc:
        if not os.path.lexists(Path(source).expanduser()):
            raise
        raise DatasetNotFoundError(
            f"{exc} A name is looked up in the registries; to install the folder or archive "
            f"{source} here, write ./{source}."
        ) from None


def _from_registry(ref: DatasetRef, pins: _Pins, force: bool) -> _Plan | Installed:
    """Resolve ``ref`` in the registries, unless what is installed answers without them."""
    if ref.version is not None and not force and cache.dataset_path(ref).is_dir():
        return _checked(cache.dataset_path(ref), pins)
    versions = cache.installed_versions(ref) if ref.version is None and not force else []
    newest = ref.with_version(versions[-1]) if versions else None
    if settings.offline():
        if newest:
            note = f"BRINELITE_OFFLINE is set: using the installed {newest}."
            return replace(_checked(cache.dataset_path(newest), pins), note=note)
        raise OfflineError(
            f"BRINELITE_OFFLINE is set: cannot look up {ref} in the registries "
            "(no installed version to use); unset it to use the network."
        )
    try:
        found = registry.resolve(ref)
    except (UnreachableError, OfflineError, DatasetNotFoundError) as exc:
        if not newest:
            raise
        reason = (
            f"{ref} is not in the registries asked"
            if isinstance(exc, DatasetNotFoundError)
            else "No registry could be reached"
        )
        note = f"{reason}: using the installed {newest} (newest installed)."
        return replace(_checked(cache.dataset_path(newest), pins), note=note)
    return _Plan(
        ref.full_name if ref.version is None else str(ref),
        found.location,
        "url" if "://" in found.location else "archive",
        found.ref,
        pins.sha256 or found.sha256,
        pins,
        size=found.size,
        registry=redact_url(found.registry),
        headers=found.headers,
        skipped=tuple(str(item) for item in found.skipped),
    )


def _checked(path: Path, pins: _Pins, shown: str = "") -> Installed:
    """The installed dataset at ``path``, once it matches the user's pins (else an error)."""
    record = cache.InstallRecord.read(path)
    manifest = manifest_io.read(path)
    recorded = record.sha256 or "unknown (installed from a folder)"
    if pins.sha256 is not None and pins.sha256 != record.sha256:
        raise IntegrityError(
            f"{manifest.ref} is installed from an archive with sha256 {recorded}, "
            f"not the {pins.sha256} asked for; pass --force to replace it."
        )
    if pins.fingerprint is not None and pins.fingerprint != manifest.fingerprint:
        raise IntegrityError(
            f"{manifest.ref} is installed with fingerprint {manifest.fingerprint}, "
            f"not the {pins.fingerprint} asked for; pass --force to replace it."
        )
    source = redact_url(record.source or shown)
    return Installed(
        manifest.ref,
        path,
        record.sha256,
        source,
        already=True,
        fingerprint=manifest.fingerprint,
    )


def _already_installed(plan: _Plan) -> Installed | None:
    """The installed copy of ``plan``'s dataset, if the same thing is installed already."""
    if plan.ref is not None and plan.ref.version is not None:
        path = cache.dataset_path(plan.ref)
        return _checked(path, plan.pins, plan.shown) if path.is_dir() else None
    if plan.kind != "url":
        return None
    key = url_key(plan.location)
    for ref in cache.installed():
        if plan.ref is not None and ref.full_name != plan.ref.full_name:
            continue
        record = cache.InstallRecord.read(cache.dataset_path(ref))
        same = key == record.source_sha256 or plan.location == record.source
        if same and plan.sha256 in (None, record.sha256):
            return _checked(cache.dataset_path(ref), plan.pins, plan.shown)
    return None


def _install_locked(
    plan: _Plan, shared: cache.SharedDownload, force: bool, quiet: bool
) -> Installed:
    """Install ``plan`` with its download lock held; the archive is fetched once for all
    processes waiting for it (``shared``), which deletes it once none waits."""
    with cache.staging() as staging:
        if plan.kind == "folder":
            root, manifest = _stage_folder(plan, staging / "dataset", quiet)
            digest = ""
        else:
            kept = shared.kept(plan.sha256)
            digest = kept.sha256 if kept else _fetch(plan, quiet).sha256
            shared.sha256 = digest
            root, manifest = _unpack(plan, shared.archive, staging, quiet)
        _check_identity(plan, manifest)
        cache.InstallRecord(
            source=redact_url(plan.location),
            source_sha256=url_key(plan.location),
            sha256=digest,
            registry=plan.registry or "",
            installed=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        ).write(root)
        with cache.lock(manifest.ref.full_name):
            if not force and _same_installed(manifest):
                return _checked(cache.dataset_path(manifest.ref), plan.pins, plan.shown)
            path = cache.commit(root, manifest.ref, force=force)
    return Installed(
        manifest.ref,
        path,
        digest,
        redact_url(plan.location),
        skipped=plan.skipped,
        fingerprint=manifest.fingerprint,
    )


def _check_identity(plan: _Plan, manifest: Manifest) -> None:
    """Refuse a dataset other than the one named (by --name or the registry) or pinned."""
    ref, wanted = manifest.ref, plan.ref
    if wanted is not None and (
        wanted.full_name != ref.full_name or wanted.version not in (None, ref.version)
    ):
        if plan.named:
            raise ManifestError(
                f"{plan.shown} holds {ref}, but --name says {wanted}; drop --name to install "
                f"it as {ref.full_name} (--name only names sources without a manifest)."
            )
        raise ManifestError(f"{plan.shown} was expected to hold {wanted} but holds {ref}.")
    pinned = plan.pins.fingerprint
    if pinned is not None and pinned != manifest.fingerprint:
        raise IntegrityError(
            f"{ref} from {plan.shown} has fingerprint {manifest.fingerprint}, expected {pinned}; "
            "not installed."
        )


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


def _fetch(plan: _Plan, quiet: bool) -> download.FetchResult:
    """The archive, fetched into ``downloads/`` and hashed, whatever its location."""
    verb = "Downloading" if plan.kind == "url" else "Reading"
    with bar(f"{verb} {plan.shown}", quiet=quiet) as progress:
        return download.fetch(
            plan.location,
            cache.download_path(plan.location),
            sha256=plan.sha256,
            size=plan.size,
            headers=plan.headers,
            progress=progress,
        )


def _unpack(plan: _Plan, archive_path: Path, staging: Path, quiet: bool) -> tuple[Path, Manifest]:
    """Extract safely, then verify the manifest (or write one for a plain tree)."""
    extracted = staging / "extracted"
    extracted.mkdir()
    size = archive_path.stat().st_size
    with bar(f"Extracting {plan.shown}", quiet=quiet) as progress:
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
            f"{plan.shown} holds no manifest.json; to install a plain images/ + masks/ tree, "
            "name it: brinelite install SOURCE --name scope/name[@version]."
        )
    version = str(plan.ref.version) if plan.ref.version else DEFAULT_VERSION
    dest.mkdir()
    with bar("Checking images", unit="items", quiet=quiet) as progress:
        manifest = stage(
            scan_pairs(root),
            dest,
            plan.ref.full_name,
            version,
            progress=progress,
            binary=plan.binary,
        )
    return dest, manifest


def _stage_folder(plan: _Plan, dest: Path, quiet: bool) -> tuple[Path, Manifest]:
    """Copy a dataset folder (verifying it) or adopt a plain images/ + masks/ folder.

    A folder with a manifest is walked as :func:`brinelite.archive.create` walks what it
    archives: a symbolic link anywhere (to a file outside, or a loop) or a special file is
    refused, so an install never copies what the folder only points to.
    """
    folder = Path(plan.location)
    if not (folder / manifest_io.MANIFEST).is_file():
        return _adopt(plan, folder, dest, quiet)
    manifest = manifest_io.read(folder)
    members = archive.tree(folder)  # the archive's link rules; raises ArchiveError
    dest.mkdir()
    for relative, path in members:
        if relative == manifest_io.INSTALL_RECORD:
            continue
        if path.is_dir():
            (dest / relative).mkdir(exist_ok=True)
        else:
            shutil.copyfile(path, dest / relative, follow_symlinks=False)
    manifest_io.verify(dest, manifest)
    return dest, manifest
