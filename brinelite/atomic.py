"""Files written for later reading appear whole or not at all.

A reader (another process, the next command, a crash's survivor) must never see half a file,
and two writers must never share a temporary name. ``atomic_write`` writes into a fresh
temporary file beside the target (``mkstemp``: a unique name, same filesystem), flushes it to
disk, and renames it over the target in one step; on any failure, Ctrl-C included, the
temporary file is removed and the target is left as it was.

    with atomic_write(path) as out:
        out.write(text)
    write_text(path, json.dumps(record))
    with atomic_path(path, suffix=".tmp.keras") as tmp:  # a writer that takes a file name
        model.save(tmp)
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A fresh temporary file beside ``path`` that replaces ``path`` when the block succeeds.

    For writers that take a file name rather than an open file (Keras' ``model.save`` wants a
    name ending in ``.keras``, hence ``suffix``): the block writes the temporary file by its
    name, then it is flushed to disk and renamed over ``path`` in one step.

    Args:
        path: the file to write; its folder must exist.
        suffix: how the temporary file's name ends (it starts with ``.``, hidden, and the
            target's name).

    Yields:
        The temporary file's path (the file exists, empty); it ends up readable by everyone
        (0644).

    Raises:
        OSError: the folder is missing or unwritable, or the disk is full; ``path`` is then
            unchanged and no temporary file is left (nor on any other failure, Ctrl-C
            included).

    Example::

        with atomic_path("runs/a/model.keras", suffix=".tmp.keras") as tmp:
            model.save(tmp)
    """
    path = Path(path)
    # A name near the 255-byte limit still leaves room for the temporary file's own.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:200]}.", suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        descriptor = os.open(tmp, os.O_RDONLY)  # fsync flushes the file, whoever wrote it
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_write(
    path: str | Path, mode: str = "w", *, encoding: str | None = "utf-8", newline: str | None = None
) -> Iterator[IO[Any]]:
    """Open a temporary file that replaces ``path`` in one rename when the block succeeds.

    Args:
        path: the file to write; its folder must exist.
        mode: ``"w"`` (text) or ``"wb"`` (bytes).
        encoding, newline: as for ``open`` in text mode (ignored for bytes).

    Yields:
        The open temporary file (``atomic_path``'s). The new file is readable by everyone
        (0644), as files written with ``open`` under the usual umask are.

    Raises:
        OSError: the folder is missing or unwritable, or the disk is full; ``path`` is then
            unchanged and no temporary file is left.

    Example::

        with atomic_write("brinelite.lock") as out:
            out.write(text)
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write writes whole files: mode 'w' or 'wb', not {mode!r}")
    text = {} if mode == "wb" else {"encoding": encoding, "newline": newline}
    with atomic_path(path) as tmp, open(tmp, mode, **text) as out:
        yield out


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; see ``atomic_write``.

    Example::

        write_text(run / "config.json", json.dumps(record, indent=2) + "\\n")
    """
    with atomic_write(path) as out:
        out.write(text)
    return Path(path)
