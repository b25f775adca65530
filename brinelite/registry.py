"""Resolving ``scope/name[@version]`` to an archive across the configured registries.

A registry is a static tree of files (layout in ``docs/registry.md``)::

    <root>/<scope>/<name>/index.json              the dataset's versions
    <root>/<scope>/<name>/<name>-<version>.tar.gz one archive per version

Registries are tried in order: those in ``$BRINELITE_REGISTRY`` (comma
separated), then the demo registry shipped inside the package, which works
offline.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from . import archive
from . import manifest as manifest_io
from .errors import AlreadyExistsError, DatasetNotFoundError, RegistryError
from .hashes import file_info
from .manifest import Manifest
from .names import DatasetRef, Version, newest, parse_version, suggest

INDEX = "index.json"
INDEX_FORMAT_VERSION = 1
DEMO_REGISTRY = Path(__file__).parent / "demo" / "registry"


@dataclass(frozen=True)
class Resolved:
    """Where one pinned version's archive is, and what it must hash to."""

    ref: DatasetRef
    location: str
    sha256: str
    size: int
    registry: str


def registries() -> list[str]:
    """The registries to ask, in order."""
    configured = os.environ.get("BRINELITE_REGISTRY", "")
    return [entry.strip() for entry in configured.split(",") if entry.strip()] + [
        str(DEMO_REGISTRY)
    ]


def _read_index(registry: str, ref: DatasetRef) -> dict[str, Any] | None:
    path = Path(registry) / ref.scope / ref.name / INDEX
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise RegistryError(f"Registry {registry} has an unreadable index {path}: {exc}.") from exc


def _pick(index: dict[str, Any], ref: DatasetRef) -> Version | None:
    versions = [parse_version(v) for v in index.get("versions", {})]
    if ref.version is None:
        return newest(versions)
    return ref.version if ref.version in versions else None


def resolve(ref: DatasetRef) -> Resolved:
    """The archive of ``ref`` (newest version unless pinned) in the first registry holding it."""
    asked = registries()
    for registry in asked:
        index = _read_index(registry, ref)
        version = _pick(index, ref) if index else None
        if version is None:
            continue
        entry = index["versions"][str(version)]
        location = str(Path(registry) / ref.scope / ref.name / entry["archive"])
        return Resolved(
            ref.with_version(version), location, entry["sha256"], entry["size"], registry
        )
    known = [name for registry in asked for name in list_names(registry)]
    raise DatasetNotFoundError(
        f"Dataset {ref} was not found in the registries asked ({', '.join(asked)})."
        + suggest(ref.full_name, known)
    )


def list_names(registry: str) -> list[str]:
    """The ``scope/name`` of every dataset a folder registry holds."""
    root = Path(registry)
    return sorted(path.parent.relative_to(root).as_posix() for path in root.glob(f"*/*/{INDEX}"))


def publish_to_folder(archive_path: Path, manifest: Manifest, sha256: str, dest: Path) -> str:
    """Copy a verified archive into a folder registry and add it to the dataset's index.

    Versions are immutable: publishing one that exists raises :class:`AlreadyExistsError`.
    The index is replaced atomically (written beside, then renamed) under a lock, so
    concurrent publishes of different versions all land.
    """
    ref = manifest.ref
    folder = Path(dest) / ref.scope / ref.name
    folder.mkdir(parents=True, exist_ok=True)
    filename = f"{ref.name}-{ref.version}.tar.gz"
    with FileLock(folder / ".index.lock"):
        index = _read_index(str(dest), ref) or {
            "format_version": INDEX_FORMAT_VERSION,
            "name": ref.full_name,
            "versions": {},
        }
        if str(ref.version) in index["versions"]:
            raise AlreadyExistsError(
                f"{ref} is already published in {dest}; versions are immutable, "
                "build a new version instead."
            )
        shutil.copyfile(archive_path, folder / f".{filename}.tmp")
        os.replace(folder / f".{filename}.tmp", folder / filename)
        index["versions"][str(ref.version)] = {
            "archive": filename,
            "size": Path(archive_path).stat().st_size,
            "sha256": sha256,
            "rows": manifest.rows,
            "columns": [column.to_json() for column in manifest.columns],
            "description": manifest.description,
            "created": manifest.created,
        }
        _write_json_atomically(folder / INDEX, index)
    return filename


def _write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def publish(archive_path: Path, dest: str) -> Resolved:
    """Check a dataset archive (safe extraction, manifest hashes) and publish it to ``dest``."""
    archive_path = Path(archive_path)
    with tempfile.TemporaryDirectory(prefix="brinelite-publish-") as tmp:
        infos = archive.extract(archive_path, Path(tmp))
        manifest = manifest_io.read(Path(tmp))
        manifest_io.verify(Path(tmp), manifest, infos)
    sha256 = file_info(archive_path).sha256
    filename = publish_to_folder(archive_path, manifest, sha256, Path(dest))
    location = str(Path(dest) / manifest.ref.scope / manifest.ref.name / filename)
    return Resolved(manifest.ref, location, sha256, archive_path.stat().st_size, dest)
