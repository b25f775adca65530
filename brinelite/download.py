"""The one core that fetches an archive: part file, resume, retries, sha256, final rename.

:func:`fetch` gets bytes from a transport chosen once from the URL (``brinelite.transports``:
HTTP, S3, a local file) and owns everything else. It writes ``NAME.part`` next to the
destination and renames it only once the whole body has arrived and its sha256 matches,
so ``dest`` is either absent or complete, and it always returns the sha256. A transfer cut
short is resumed from the part, in the same call or a later one: ``NAME.part.json`` records
which URL (by its sha256, never the URL itself, which may carry a signature) and which
version of the file (ETag, Last-Modified, or size and time) the part belongs to. The bytes
kept and hashed are the bytes sent: a ``Content-Encoding`` is never undone, since the file is
an archive whose published sha256 is that of its compressed bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from . import settings, transports
from .errors import DownloadError, IntegrityError, OfflineError
from .hashes import CHUNK
from .progress import Progress, Silent
from .redact import redact_url, url_key
from .transports import Opened, Transient, Transport

_MAX_DELAY = 10.0
_MAX_RETRY_AFTER = 60.0


@dataclass(frozen=True)
class FetchResult:
    """A finished download: where it is, its size in bytes and its sha256 (hex)."""

    path: Path
    size: int
    sha256: str


def choose(url: str, headers: dict[str, str] | None = None, timeout: float = 30.0) -> Transport:
    """The transport for ``url``'s scheme (a plain path is a local file).

    ``headers`` (e.g. a registry's ``Authorization``) go to that URL's host only.

    >>> choose("/data/cells.tar.gz").network
    False
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        return transports.HTTPTransport(headers or {}, timeout)
    if scheme == "s3":
        from .s3 import S3Transport

        return S3Transport()
    if scheme in ("", "file") or re.fullmatch(r"[a-z]", scheme):  # "" or a Windows drive
        return transports.FileTransport()
    raise DownloadError(f"Cannot download {redact_url(url)}: unknown scheme {scheme!r}.")


def fetch(
    url: str,
    dest: Path,
    *,
    sha256: str | None = None,
    size: int | None = None,
    headers: dict[str, str] | None = None,
    progress: Progress | None = None,
    timeout: float = 30.0,
    retries: int = 5,
    backoff: float = 0.5,
) -> FetchResult:
    """Fetch ``url`` (http(s)://, s3://, file:// or a path) to ``dest``, resuming, and verify it.

    Connection errors, timeouts, HTTP 429/5xx and bodies cut short are retried ``retries``
    times, waiting ``backoff * 2**n`` seconds (at most 10 s), or the ``Retry-After`` the
    server asked for (at most 60 s); an attempt that adds to the part does not use up a
    retry. Under ``BRINELITE_OFFLINE`` only local files are read. The caller must keep two
    processes from fetching the same ``dest`` at once (``brinelite.cache.lock``).

    ``size`` (bytes, as a registry index declares it) stops the transfer as soon as more
    arrives, or as soon as a ``Content-Length`` says more will; without it a network
    download stops past ``BRINELITE_MAX_DOWNLOAD_BYTES``. Either way the part is deleted.

    Example: ``fetch("https://host/cells.tar.gz", Path("cells.tar.gz")).sha256``.
    """
    transport = choose(url, headers, timeout)
    if transport.network and settings.offline():
        raise OfflineError(
            f"BRINELITE_OFFLINE is set: not downloading {redact_url(url)}; "
            "unset it to use the network."
        )
    progress = progress or Silent()
    part = _Part.load(url, dest)
    part.limit = _Limit.of(url, size, transport.network)
    failures = attempts = 0
    best = part.offset
    try:
        while True:
            attempts += 1
            try:
                _attempt(transport, url, part, progress)
                break
            except Transient as exc:
                if exc.restart:
                    part.reset()
                failures = 1 if part.offset > best else failures + 1
                best = max(best, part.offset)
                if failures > retries:
                    raise DownloadError(
                        f"Download of {redact_url(url)} failed after {attempts} attempt"
                        f"{'s' if attempts > 1 else ''} ({exc}); check the network and try again."
                    ) from exc
                time.sleep(_delay(failures, backoff, exc.retry_after))
    finally:
        transport.close()
    return part.finish(dest, sha256, transport.network)


def _delay(failures: int, backoff: float, retry_after: float | None) -> float:
    """Exponential backoff capped at 10 s, or longer when the server asked (at most 60 s)."""
    delay = min(backoff * 2 ** (failures - 1), _MAX_DELAY)
    return delay if retry_after is None else max(delay, min(retry_after, _MAX_RETRY_AFTER))


def _attempt(transport: Transport, url: str, part: _Part, progress: Progress) -> None:
    """One request: append what arrives to the part; raise :class:`Transient` if cut short."""
    ranged = part.offset > 0 and part.validator is not None
    if not ranged:
        part.reset()
    opened = transport.open(url, part.offset if ranged else 0, part.validator)
    try:
        _take(opened, part, progress)
    finally:
        opened.close()
    if part.total is not None and part.offset != part.total:
        raise Transient(f"body ended after {part.offset} of {part.total} bytes")


def _take(opened: Opened, part: _Part, progress: Progress) -> None:
    """Start the part over or continue it with ``opened``, then append its bytes."""
    if opened.start == 0:
        part.begin(opened.total, opened.validator)
    elif part.total is not None and opened.total != part.total:
        raise Transient("the file changed size since the part was written", restart=True)
    else:
        part.total = opened.total
    part.limit.check(part, part.total or 0)
    progress.start(part.total)
    progress.advance(part.offset)
    with part.path.open("ab") as out:
        for chunk in opened.chunks:
            part.limit.check(part, part.offset + len(chunk))
            out.write(chunk)
            part.hasher.update(chunk)
            part.offset += len(chunk)
            progress.advance(len(chunk))


@dataclass(frozen=True)
class _Limit:
    """The most bytes a download may bring: its declared size, else the setting's cap."""

    url: str
    most: int | None
    declared: bool

    @classmethod
    def of(cls, url: str, size: int | None, network: bool) -> _Limit:
        """The declared ``size``; else ``BRINELITE_MAX_DOWNLOAD_BYTES`` over a network."""
        if size is not None:
            return cls(url, size, True)
        return cls(url, settings.max_download_bytes() if network else None, False)

    def check(self, part: _Part, amount: int) -> None:
        """Delete the part and stop if ``amount`` bytes would pass the limit."""
        if self.most is None or amount <= self.most:
            return
        part.reset()
        shown = redact_url(self.url)
        if self.declared:
            raise IntegrityError(
                f"{shown} is larger than the {self.most} bytes its registry index declares; "
                "stopped before the rest arrived and deleted the download."
            )
        raise DownloadError(
            f"{shown} is larger than BRINELITE_MAX_DOWNLOAD_BYTES ({self.most} bytes); stopped "
            "and deleted. Raise that setting (0 = no limit) if the archive really is this big."
        )


class _Part:
    """The partial file: how many bytes it holds, their running sha256, and whose they are."""

    def __init__(self, url: str, dest: Path) -> None:
        self.url = url
        self.path = dest.with_name(dest.name + ".part")
        self.meta = dest.with_name(dest.name + ".part.json")
        self.limit = _Limit(url, None, False)  # fetch sets the real one
        self._empty()

    @classmethod
    def load(cls, url: str, dest: Path) -> _Part:
        """The part an earlier call left for the same URL, re-hashed; else an empty one."""
        part = cls(url, dest)
        try:
            meta = dict(json.loads(part.meta.read_text()))
            size = part.path.stat().st_size
        except (OSError, ValueError, TypeError):
            part.reset()
            return part
        validator, total = meta.get("validator"), meta.get("size")
        if (
            meta.get("url_sha256") != url_key(url)
            or not isinstance(validator, str)
            or not (total is None or (isinstance(total, int) and size <= total))
        ):
            part.reset()
            return part
        part.offset, part.validator, part.total = size, validator, total
        with part.path.open("rb") as data:
            while chunk := data.read(CHUNK):
                part.hasher.update(chunk)
        return part

    def reset(self) -> None:
        """Forget and delete any partial data."""
        self._empty()
        self.discard()

    def _empty(self) -> None:
        self.offset = 0
        self.hasher = hashlib.sha256()
        self.validator: str | None = None
        self.total: int | None = None

    def begin(self, total: int | None, validator: str | None) -> None:
        """Start over with a whole body, recording what identifies its version."""
        self.reset()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.validator, self.total = validator, total
        record = {"url_sha256": url_key(self.url), "validator": validator, "size": total}
        self.meta.write_text(json.dumps(record))

    def finish(self, dest: Path, sha256: str | None, network: bool) -> FetchResult:
        """Check the sha256 and move the part to ``dest``; delete it if the sha256 differs."""
        actual = self.hasher.hexdigest()
        if sha256 is not None and actual != sha256.lower():
            self.discard()
            kept = "the download was deleted" if network else "not installed"
            raise IntegrityError(
                f"{redact_url(self.url)} has sha256 {actual}, expected {sha256}; {kept}."
            )
        with self.path.open("ab") as out:
            os.fsync(out.fileno())
        os.replace(self.path, dest)
        self.meta.unlink(missing_ok=True)
        return FetchResult(dest, self.offset, actual)

    def discard(self) -> None:
        """Delete the part and its record."""
        self.path.unlink(missing_ok=True)
        self.meta.unlink(missing_ok=True)
