"""Registries: static trees of files holding published datasets, and finding names in them.

The layout (``docs/registry.md``, format version 1)::

    <root>/index.json                              the datasets it holds (optional)
    <root>/<scope>/<name>/index.json               the dataset's versions
    <root>/<scope>/<name>/<name>-<version>.tar.gz  one archive per version

A registry is a folder, an http(s) URL or an ``s3://bucket/prefix`` (see ``backends.py``).
They are asked in order: ``$BRINELITE_REGISTRY`` (comma separated), those added with
``brinelite registry add``, then the demo registry shipped inside the package (offline).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from . import archive, cache, config
from . import manifest as manifest_io
from .backends import FolderStore, Store, WritableStore, open_store, open_writable
from .config import RegistryEntry
from .errors import AlreadyExistsError, DatasetNotFoundError, RegistryError
from .hashes import file_info
from .manifest import Manifest
from .names import DatasetRef, Version, is_name, newest, parse_name, parse_version, suggest

INDEX = "index.json"
INDEX_FORMAT_VERSION = 1
DEMO_REGISTRY = Path(__file__).parent / "demo" / "registry"


@dataclass(frozen=True)
class Resolved:
    """Where one pinned version's archive is, what it must hash to, and how to ask for it."""

    ref: DatasetRef
    location: str
    sha256: str
    size: int
    registry: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Listing:
    """One dataset of one registry, as ``brinelite search`` shows it."""

    registry: str
    name: str
    versions: list[str]
    latest: str
    rows: int
    size: int
    description: str


def registries() -> list[RegistryEntry]:
    """The registries to ask, in order."""
    configured = [u.strip() for u in os.environ.get("BRINELITE_REGISTRY", "").split(",")]
    demo = RegistryEntry("demo", str(DEMO_REGISTRY))
    return [RegistryEntry(url, url) for url in configured if url] + config.load() + [demo]


def _dataset_index(store: Store, ref: DatasetRef) -> dict[str, Any] | None:
    """The dataset's index, None if absent; an index of an unknown format is refused."""
    index = store.read_json(f"{ref.scope}/{ref.name}/{INDEX}")
    if index is not None and index.get("format_version") != INDEX_FORMAT_VERSION:
        raise RegistryError(
            f"Registry {store.url} holds {ref.full_name} in index format "
            f"{index.get('format_version')!r}; this brinelite reads format "
            f"{INDEX_FORMAT_VERSION}. Upgrade brinelite."
        )
    return index


def _pick(index: dict[str, Any], ref: DatasetRef) -> Version | None:
    versions = [parse_version(v) for v in index.get("versions", {})]
    if ref.version is None:
        return newest(versions)
    return ref.version if ref.version in versions else None


def _archive_path(store: Store, ref: DatasetRef, relative: str) -> str:
    """The archive's location; an index may only point inside the dataset's folder."""
    path = PurePosixPath(relative)
    if path.is_absolute() or ".." in path.parts or "\\" in relative or not path.parts:
        raise RegistryError(f"Registry {store.url} lists an unsafe archive path {relative!r}.")
    return store.location(f"{ref.scope}/{ref.name}/{path}")


def resolve(ref: DatasetRef) -> Resolved:
    """The archive of ``ref`` (newest version unless pinned) in the first registry holding it.

    A registry that cannot be reached is skipped (and named if nothing is found), so the
    demo registry works offline; a registry refusing access raises :class:`AuthError`.
    """
    asked, failed, versions = [], [], set()
    for entry in registries():
        asked.append(entry.url)
        try:
            store = open_store(entry)
            index = _dataset_index(store, ref)
        except RegistryError as exc:
            failed.append(str(exc))
            continue
        version = _pick(index, ref) if index else None
        if version is None:
            versions.update(index.get("versions", {}) if index else ())
            continue
        item = index["versions"][str(version)]
        location = _archive_path(store, ref, item["archive"])
        return Resolved(
            ref.with_version(version),
            location,
            item["sha256"],
            item["size"],
            entry.url,
            store.headers,
        )
    if versions:
        listed = ", ".join(str(v) for v in sorted(parse_version(v) for v in versions))
        raise DatasetNotFoundError(
            f"Dataset {ref} was not found in the registries asked ({', '.join(asked)}); "
            f"published versions of {ref.full_name}: {listed}."
        )
    known = [listing.name for listing in search(quiet=True)]
    raise DatasetNotFoundError(
        f"Dataset {ref} was not found in the registries asked ({', '.join(asked)})."
        + suggest(ref.full_name, known)
        + (f" Skipped: {' '.join(failed)}" if failed else "")
    )


def search(text: str = "", *, quiet: bool = False) -> list[Listing]:
    """Datasets of every registry whose name or description contains ``text``.

    A registry without top-level ``index.json`` is scanned if it is a folder. ``quiet``
    skips registries that fail instead of raising.
    """
    found = []
    for entry in registries():
        try:
            datasets = _datasets(open_store(entry))
        except RegistryError:
            if quiet:
                continue
            raise
        for name, summary in sorted(datasets.items()):
            if text.lower() in f"{name} {summary.get('description', '')}".lower():
                found.append(
                    Listing(
                        entry.url,
                        name,
                        summary.get("versions", []),
                        summary.get("latest", ""),
                        summary.get("rows", 0),
                        summary.get("size", 0),
                        summary.get("description", ""),
                    )
                )
    return found


def _datasets(store: Store) -> dict[str, dict[str, Any]]:
    """The top-level listing of a registry (rebuilt by scanning a folder that has none)."""
    top = store.read_json(INDEX)
    if top is not None:
        return dict(top.get("datasets", {}))
    if not isinstance(store, FolderStore):
        return {}
    return {
        name: _summary(store.read_json(f"{name}/{INDEX}") or {}) for name in store.dataset_names()
    }


def _summary(index: dict[str, Any]) -> dict[str, Any]:
    """A dataset's entry in the top-level listing: its versions and its latest one's details."""
    versions = sorted(index.get("versions", {}), key=parse_version)
    latest = index["versions"][versions[-1]] if versions else {}
    return {
        "versions": versions,
        "latest": versions[-1] if versions else "",
        "rows": latest.get("rows", 0),
        "size": latest.get("size", 0),
        "description": latest.get("description", ""),
    }


def publish(source: Path | str, dest: str) -> Resolved:
    """Publish an archive, a dataset folder or an installed dataset to ``dest``.

    ``source`` is a path, or ``scope/name[@version]`` of an installed dataset; ``dest`` a
    folder, ``file://`` URL or ``s3://bucket/prefix``. Versions are immutable: publishing one
    that exists raises :class:`AlreadyExistsError`. Index files are replaced atomically, under
    a lock for folders, so concurrent publishes of different versions all land.
    """
    path = Path(source).expanduser()
    if path.is_file():
        return _publish_archive(path, dest)
    if not path.is_dir() and not is_name(str(source)):
        raise RegistryError(
            f"{source} is not an archive, a dataset folder or the name of an installed dataset."
        )
    folder = (
        path
        if path.is_dir()
        else cache.dataset_path(cache.resolve_installed(parse_name(str(source))))
    )
    with tempfile.TemporaryDirectory(prefix="brinelite-publish-") as tmp:
        staged = Path(tmp) / "dataset"
        shutil.copytree(folder, staged, ignore=shutil.ignore_patterns(manifest_io.INSTALL_RECORD))
        archive.create(staged, Path(tmp) / "dataset.tar.gz")
        return _publish_archive(Path(tmp) / "dataset.tar.gz", dest)


def _publish_archive(archive_path: Path, dest: str) -> Resolved:
    """Check an archive (safe extraction, manifest hashes), then add it to ``dest``."""
    with tempfile.TemporaryDirectory(prefix="brinelite-publish-") as tmp:
        infos = archive.extract(archive_path, Path(tmp))
        manifest = manifest_io.read(Path(tmp))
        manifest_io.verify(Path(tmp), manifest, infos)
    info = file_info(archive_path)
    store = open_writable(dest)
    filename = _add_version(store, archive_path, manifest, info.sha256, info.size)
    location = store.location(f"{manifest.ref.scope}/{manifest.ref.name}/{filename}")
    return Resolved(manifest.ref, location, info.sha256, info.size, store.url)


def _add_version(
    store: WritableStore, archive_path: Path, manifest: Manifest, sha256: str, size: int
) -> str:
    """Upload the archive, then add it to the dataset's index and to the top-level listing."""
    ref = manifest.ref
    folder = f"{ref.scope}/{ref.name}"
    filename = f"{ref.name}-{ref.version}.tar.gz"
    with store.lock():
        index = _dataset_index(store, ref) or {
            "format_version": INDEX_FORMAT_VERSION,
            "name": ref.full_name,
            "versions": {},
        }
        if str(ref.version) in index["versions"]:
            raise AlreadyExistsError(
                f"{ref} is already published in {store.url}; versions are immutable, "
                "build a new version instead."
            )
        store.put_file(archive_path, f"{folder}/{filename}")
        index["versions"][str(ref.version)] = {
            "archive": filename,
            "size": size,
            "sha256": sha256,
            "rows": manifest.rows,
            "columns": [column.to_json() for column in manifest.columns],
            "description": manifest.description,
            "created": manifest.created,
        }
        store.put_json(f"{folder}/{INDEX}", index)
        top = store.read_json(INDEX) or {"format_version": INDEX_FORMAT_VERSION, "datasets": {}}
        top.setdefault("datasets", {})[ref.full_name] = _summary(index)
        store.put_json(INDEX, top)
    return filename
