"""``brinelite.lock``: the exact datasets a project uses, to install them again verified.

As DVC's ``dvc.lock`` or pip's requirements with ``--hash``: :func:`write` records, for each
installed dataset, its exact version, the sha256 of the archive it was installed from and
the fingerprint of its manifest; :func:`install_all` installs exactly those and refuses any
archive or dataset that does not match. The format (JSON; the README shows it too)::

    {
      "lock_version": 1,
      "datasets": [
        {"name": "demo/membrane", "version": "1.0.0",
         "sha256": "<64 hex: the archive>", "fingerprint": "<64 hex: the manifest>"}
      ]
    }

A lock file is untrusted input: it is capped in size and entries, every field is checked
(names by the name rules, hashes as 64 hex digits, no unknown or duplicate keys or names),
and nothing is installed unless the whole file is valid.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from . import cache, jsonio
from . import manifest as manifest_io
from .atomic import write_text
from .errors import InvalidNameError, LockFileError, disk_advice
from .install import Installed, install, is_sha256
from .names import DatasetRef, parse_name, parse_version

LOCK_FILE = "brinelite.lock"
LOCK_VERSION = 1
MAX_BYTES = 1024**2
MAX_ENTRIES = 1000
_FIELDS = ("name", "version", "sha256", "fingerprint")


@dataclass(frozen=True)
class Locked:
    """One pinned dataset: exact name@version, archive sha256 and manifest fingerprint."""

    ref: DatasetRef
    sha256: str
    fingerprint: str

    def to_json(self) -> dict[str, str]:
        return {
            "name": self.ref.full_name,
            "version": str(self.ref.version),
            "sha256": self.sha256,
            "fingerprint": self.fingerprint,
        }


def lock_installed(names: list[str]) -> list[Locked]:
    """The lock entries of installed datasets (``scope/name`` means its newest installed).

    A dataset installed from a folder has no archive to pin and is refused.
    """
    entries: dict[str, Locked] = {}
    for name in names:
        ref = cache.resolve_installed(parse_name(name))
        path = cache.dataset_path(ref)
        digest = cache.InstallRecord.read(path).sha256
        if not is_sha256(digest):
            raise LockFileError(
                f"{ref} was not installed from an archive, so it has no sha256 to lock; "
                "publish it to a registry and install it from there."
            )
        entries[ref.full_name] = Locked(ref, digest, manifest_io.read(path).fingerprint)
    return sorted(entries.values(), key=lambda entry: entry.ref.full_name)


def write(entries: list[Locked], path: Path) -> Path:
    """Write ``entries`` to ``path``, whole or not at all (:mod:`brinelite.atomic`)."""
    text = json.dumps(
        {"lock_version": LOCK_VERSION, "datasets": [entry.to_json() for entry in entries]},
        indent=2,
    )
    path = Path(path)
    if os.path.isdir(path):
        raise LockFileError(f"Cannot write the lock file {path}: it is a folder; name a file.")
    try:
        return write_text(path, text + "\n")
    except OSError as exc:
        raise LockFileError(
            f"Cannot write the lock file {path} ({disk_advice(exc)}); its folder must exist."
        ) from exc


def read(path: Path) -> list[Locked]:
    """The entries of the lock file at ``path``; a :class:`LockFileError` names what is wrong."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise LockFileError(f"Cannot read the lock file {path}: {exc.strerror}.") from exc
    if len(raw) > MAX_BYTES:
        raise LockFileError(f"Lock file {path} is over {MAX_BYTES} bytes; it is not a lock file.")
    try:
        data = jsonio.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as exc:
        raise LockFileError(f"Lock file {path} is not valid JSON: {exc}.") from exc
    if not isinstance(data, dict) or set(data) != {"lock_version", "datasets"}:
        raise LockFileError(f"Lock file {path} must hold exactly lock_version and datasets.")
    if data["lock_version"] != LOCK_VERSION or isinstance(data["lock_version"], bool):
        raise LockFileError(
            f"Lock file {path} has lock_version {str(data['lock_version'])[:20]!r}; "
            f"this brinelite reads version {LOCK_VERSION}."
        )
    items = data["datasets"]
    if not isinstance(items, list) or len(items) > MAX_ENTRIES:
        raise LockFileError(f"Lock file {path}: datasets must be a list of at most {MAX_ENTRIES}.")
    entries = [_entry(path, k, item) for k, item in enumerate(items)]
    names = [entry.ref.full_name for entry in entries]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise LockFileError(f"Lock file {path} lists {', '.join(duplicates)} more than once.")
    return entries


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate key in {keys[:8]}")
    return dict(pairs)


def _entry(path: Path, k: int, item: object) -> Locked:
    """One entry, checked field by field."""
    where = f"Lock file {path}, dataset {k + 1}"
    if not isinstance(item, dict) or set(item) != set(_FIELDS):
        raise LockFileError(f"{where} must hold exactly {', '.join(_FIELDS)}.")
    if not all(isinstance(item[key], str) and len(item[key]) <= 200 for key in _FIELDS):
        raise LockFileError(f"{where}: every field must be a string of at most 200 characters.")
    try:
        ref = parse_name(item["name"])
        if ref.version is not None:
            raise InvalidNameError(f"name {item['name']!r} must not carry a version")
        ref = ref.with_version(parse_version(item["version"]))
    except (InvalidNameError, ValueError) as exc:
        raise LockFileError(f"{where}: {exc}") from exc
    hashes = []
    for key in ("sha256", "fingerprint"):
        if not is_sha256(item[key]):
            raise LockFileError(f"{where}: {key} {item[key]!r} is not 64 lower-case hex digits.")
        hashes.append(item[key])
    return Locked(ref, *hashes)


def install_all(path: Path, *, force: bool = False, quiet: bool = False) -> list[Installed]:
    """Install every dataset of the lock file at ``path``, each verified against its pins.

    The whole file is checked before anything is installed. A dataset already installed
    must match its pins too (else one line naming both hashes).

    Example: ``install_all(Path("brinelite.lock"))``.
    """
    return [
        install(
            str(entry.ref),
            sha256=entry.sha256,
            fingerprint=entry.fingerprint,
            force=force,
            quiet=quiet,
        )
        for entry in read(path)
    ]
