"""Files written for later reading appear whole or not at all.

A reader (another process, the next command, a crash's survivor) must never see half a file,
and two writers must never share a temporary name. ``atomic_write`` writes into a fresh
temporary file beside the target (``mkstemp``: a unique name, same filesystem), flushes it to
disk, and renames it over the target in one step; on any failure, Ctrl-C included, the
temporary file is removed and the target is left as it was.

    with atomic_write(path) as out:
        out.write(text)
    write_text(path, json.dumps(record))
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


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
        The open temporary file. The new file is readable by everyone (0644), as files
        written with ``open`` under the usual umask are.

    Raises:
        OSError: the folder is missing or unwritable, or the disk is full; ``path`` is then
            unchanged and no temporary file is left.

    Example::

        with atomic_write("brinelite.lock") as out:
            out.write(text)
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write writes whole files: mode 'w' or 'wb', not {mode!r}")
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        text = {} if mode == "wb" else {"encoding": encoding, "newline": newline}
        with open(fd, mode, **text) as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; see ``atomic_write``.

    Example::

        write_text(run / "config.json", json.dumps(record, indent=2) + "\\n")
    """
    with atomic_write(path) as out:
        out.write(text)
    return Path(path)
