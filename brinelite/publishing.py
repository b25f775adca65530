"""Publishing: adding a dataset version to a registry, without ever breaking what is there.

A version is uploaded first, then listed in its dataset's index, then in the registry's
top-level listing (``docs/registry.md``). Versions are immutable; every index is read and
checked before anything is written and replaced atomically (under a lock for folders, as a
conditional PUT on S3), so concurrent publishes of different versions all land and a publish
that failed half-way is completed by running it again. Finding and reading datasets in
registries is :mod:`brinelite.registry`'s part.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from . import archive, cache, indexes
from . import manifest as manifest_io
from .backends import WritableStore, open_writable
from .errors import AlreadyExistsError, InvalidIndexError, RegistryError, WriteError, disk_advice
from .hashes import file_info
from .indexes import INDEX
from .manifest import Manifest
from .names import DatasetRef, is_name, parse_name
from .registry import INDEX_FORMAT_VERSION, Resolved, checked_index, summary


def publish(source: Path | str, dest: str) -> Resolved:
    """Publish an archive, a dataset folder or an installed dataset to ``dest``.

    ``source`` is a path, or ``scope/name[@version]`` of an installed dataset; ``dest`` a
    folder, ``file://`` URL or ``s3://bucket/prefix``. Versions are immutable: publishing one
    that exists raises :class:`AlreadyExistsError`. Index files are replaced atomically, under
    a lock for folders, so concurrent publishes of different versions all land.
    """
    if not dest.strip() or dest.strip().rstrip("/") in ("file:", "s3:"):
        raise RegistryError(
            f"--registry {dest!r} names no registry (an unset variable?): give a folder, "
            "file:// or s3://bucket/prefix; nothing was published."
        )
    try:
        return _publish(source, dest)
    except OSError as exc:
        at = f" at {exc.filename}" if exc.filename else ""
        raise WriteError(
            f"Publishing {source} to {dest} failed{at} ({disk_advice(exc)}); what is listed "
            "stays readable, and the same command completes it once fixed."
        ) from exc


def _publish(source: Path | str, dest: str) -> Resolved:
    path = Path(source).expanduser()
    if os.path.isfile(path):
        return _publish_archive(path, dest)
    if not os.path.isdir(path) and not is_name(str(source)):
        raise RegistryError(
            f"{source} is not an archive, a dataset folder or the name of an installed dataset."
        )
    folder = (
        path
        if os.path.isdir(path)
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
    """Upload the archive, then add it to the dataset's index, then to the top-level listing.

    Both indexes are read and checked before anything is written, so a malformed one leaves
    the registry untouched. Each step is an atomic replace (conditional on S3), so a failure
    between them leaves the registry readable, and rerunning the same publish completes it:
    an identical archive already uploaded, or already in the dataset index, is not
    "already published"; only a version listed with another sha256 is.
    """
    ref = manifest.ref
    folder = f"{ref.scope}/{ref.name}"
    with store.lock():
        index, index_tag, top, top_tag = _read_for_update(store, ref)
        published = index["versions"].get(str(ref.version))
        if published is not None and published["sha256"] != sha256:
            raise AlreadyExistsError(
                f"{ref} is already published in {store.url}; versions are immutable, "
                "build a new version instead."
            )
        if published is None:
            published = {
                "archive": f"{ref.name}-{ref.version}.tar.gz",
                "size": size,
                "sha256": sha256,
                "rows": manifest.rows,
                "columns": [column.to_json() for column in manifest.columns],
                "description": manifest.description,
                "created": manifest.created,
            }
            store.put_archive(archive_path, f"{folder}/{published['archive']}", sha256)
            index["versions"][str(ref.version)] = published
            store.put_json(f"{folder}/{INDEX}", index, index_tag)
        if top["datasets"].get(ref.full_name) != summary(index):
            top["datasets"][ref.full_name] = summary(index)
            store.put_json(INDEX, top, top_tag)
    return str(published["archive"])


def _read_for_update(
    store: WritableStore, ref: DatasetRef
) -> tuple[dict[str, Any], str | None, dict[str, Any], str | None]:
    """The dataset index and the top-level one (or new empty ones), with their tags."""
    try:
        raw, index_tag = store.read_tagged(f"{ref.scope}/{ref.name}/{INDEX}")
        index = checked_index(store, ref, raw) or {
            "format_version": INDEX_FORMAT_VERSION,
            "name": ref.full_name,
            "versions": {},
        }
        top, top_tag = store.read_tagged(INDEX)
        if top is None:
            top = {"format_version": INDEX_FORMAT_VERSION, "datasets": {}}
        indexes.check_top(top, store.location(INDEX))
    except InvalidIndexError as exc:
        raise InvalidIndexError(
            f"Cannot publish {ref} to {store.url}: {exc} Nothing was written; fix that file, "
            "then publish again."
        ) from exc
    return index, index_tag, top, top_tag
