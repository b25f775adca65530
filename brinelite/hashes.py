"""File sizes and sha256 digests, computed in one streaming pass."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1 << 20


@dataclass(frozen=True)
class FileInfo:
    """What the manifest promises about one file: its size in bytes and sha256 hex digest."""

    size: int
    sha256: str


def file_info(path: Path) -> FileInfo:
    """Size and sha256 of the file at ``path``, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return FileInfo(size, digest.hexdigest())
