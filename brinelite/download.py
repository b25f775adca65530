"""Streaming HTTP downloads with retries, resume, and sha256 checked while streaming.

:func:`fetch` writes ``NAME.part`` next to the destination and renames it only once the whole
body has arrived and its sha256 matches, so ``dest`` is either absent or complete. A transfer
cut short is resumed with a ``Range`` request guarded by ``If-Range``, in the same call or a
later one: ``NAME.part.json`` records which URL and which version of the file (ETag,
Last-Modified, size) the part belongs to. The bytes kept and hashed are the bytes sent: a
``Content-Encoding`` is never undone, since the file is an archive whose published sha256 is
that of its compressed bytes (and ``Accept-Encoding: identity`` asks servers not to add one).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests
import urllib3

from .errors import AuthError, DownloadError, IntegrityError
from .hashes import CHUNK
from .progress import Progress, Silent

_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_MAX_DELAY = 10.0
_CONTENT_RANGE = re.compile(r"bytes (\d+)-\d+/(\d+)")
# A connection refused, reset or timed out, or a body cut short; another attempt may succeed.
_NETWORK_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.HTTPError,
)


@dataclass(frozen=True)
class FetchResult:
    """A finished download: where it is, its size in bytes and its sha256 (hex)."""

    path: Path
    size: int
    sha256: str


def fetch(
    url: str,
    dest: Path,
    *,
    sha256: str | None = None,
    headers: dict[str, str] | None = None,
    progress: Progress | None = None,
    timeout: float = 30.0,
    retries: int = 5,
    backoff: float = 0.5,
    session: requests.Session | None = None,
) -> FetchResult:
    """Download ``url`` to ``dest``, resuming a part left by an earlier call, and verify it.

    Connection errors, timeouts, HTTP 429/5xx and bodies cut short are retried ``retries``
    times, waiting ``backoff * 2**n`` seconds (at most 10 s) between attempts; an attempt that
    adds to the part does not use up a retry. The caller must keep two processes from
    fetching the same ``dest`` at once.
    """
    progress = progress or Silent()
    part = _Part.load(url, dest)
    own_session = session is None
    session = session or _session()
    failures = attempts = 0
    best = part.offset
    try:
        while True:
            attempts += 1
            try:
                _attempt(session, url, part, headers or {}, timeout, progress)
                break
            except _Transient as exc:
                failures = 1 if part.offset > best else failures + 1
                best = max(best, part.offset)
                if failures > retries:
                    raise DownloadError(
                        f"Download of {url} failed after {attempts} attempt"
                        f"{'s' if attempts > 1 else ''} ({exc}); check the network and try again."
                    ) from exc
                time.sleep(min(backoff * 2 ** (failures - 1), _MAX_DELAY))
            except requests.RequestException as exc:  # a bad URL, too many redirects, ...
                raise DownloadError(f"Cannot download {url}: {exc}.") from exc
    finally:
        if own_session:
            session.close()
    return part.finish(dest, sha256)


def _session() -> requests.Session:
    """A session that names brinelite; proxies and .netrc come from the environment."""
    session = requests.Session()
    session.headers["User-Agent"] = "brinelite"
    return session


class _Transient(Exception):
    """An attempt failed in a way that another attempt may fix."""


def _attempt(
    session: requests.Session,
    url: str,
    part: _Part,
    headers: dict[str, str],
    timeout: float,
    progress: Progress,
) -> None:
    """One request: append what arrives to the part; raise :class:`_Transient` if cut short."""
    ranged = part.offset > 0 and part.validator is not None
    if not ranged:
        part.reset()
    request_headers = {**headers, "Accept-Encoding": "identity"}
    if ranged:
        request_headers |= {"Range": f"bytes={part.offset}-", "If-Range": part.validator}
    try:
        response = session.get(url, headers=request_headers, stream=True, timeout=timeout)
    except _NETWORK_ERRORS as exc:
        raise _Transient(exc) from exc
    with response:
        _check_status(url, response, ranged, part)
        if response.status_code == 200:
            part.begin(response)
        progress.start(part.total)
        progress.advance(part.offset)
        try:
            with part.path.open("ab") as out:
                for chunk in _body(response):
                    out.write(chunk)
                    part.hasher.update(chunk)
                    part.offset += len(chunk)
                    progress.advance(len(chunk))
        except _NETWORK_ERRORS as exc:
            raise _Transient(f"connection lost after {part.offset} bytes: {exc}") from exc
    if part.total is not None and part.offset != part.total:
        raise _Transient(f"body ended after {part.offset} of {part.total} bytes")


def _check_status(url: str, response: requests.Response, ranged: bool, part: _Part) -> None:
    """Accept a 200, or a 206 that continues the part; raise the right error for the rest."""
    status = response.status_code
    host = urlsplit(response.url).hostname
    if status == 200:
        return
    if status == 206 and ranged:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
        if match and int(match[1]) == part.offset and part.total in (None, int(match[2])):
            part.total = int(match[2])
            return
    if status in (206, 416):
        part.reset()
        raise _Transient(f"HTTP {status} with a range that does not continue the part")
    if status in (401, 403):
        raise AuthError(
            f"{host} refused access to {url} (HTTP {status}); "
            f"set BRINELITE_TOKEN or add a .netrc entry for {host}."
        )
    if status == 404:
        raise DownloadError(f"{url} was not found (HTTP 404); check the URL.")
    if status in _RETRY_STATUS:
        raise _Transient(f"HTTP {status}")
    raise DownloadError(f"Download of {url} failed with HTTP {status} {response.reason}.")


def _body(response: requests.Response) -> Iterator[bytes]:
    """The body in 1 MiB chunks, exactly as sent (a Content-Encoding is not undone)."""
    if response.headers.get("Content-Encoding", "identity").lower() != "identity":
        return response.raw.stream(CHUNK, decode_content=False)
    return response.iter_content(CHUNK)


class _Part:
    """The partial file: how many bytes it holds, their running sha256, and whose they are."""

    def __init__(self, url: str, dest: Path) -> None:
        self.url = url
        self.path = dest.with_name(dest.name + ".part")
        self.meta = dest.with_name(dest.name + ".part.json")
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
        validator = _validator(meta.get("etag"), meta.get("last_modified"))
        total = meta.get("size")
        if meta.get("url") != url or not validator or (total is not None and size > total):
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

    def begin(self, response: requests.Response) -> None:
        """Start over with a full (200) response, recording what identifies its version."""
        self.reset()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        etag = response.headers.get("ETag")
        last_modified = response.headers.get("Last-Modified")
        self.validator = _validator(etag, last_modified)
        if response.headers.get("Content-Length", "").isdigit():
            self.total = int(response.headers["Content-Length"])
        record = {"url": self.url, "etag": etag, "last_modified": last_modified}
        self.meta.write_text(json.dumps(record | {"size": self.total}))

    def finish(self, dest: Path, sha256: str | None) -> FetchResult:
        """Check the sha256 and move the part to ``dest``; delete it if the sha256 differs."""
        actual = self.hasher.hexdigest()
        if sha256 is not None and actual != sha256.lower():
            self.discard()
            raise IntegrityError(
                f"Download of {self.url} has sha256 {actual}, expected {sha256}; "
                "the file was deleted."
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


def _validator(etag: str | None, last_modified: str | None) -> str | None:
    """What to send in If-Range: a strong ETag, else Last-Modified (a weak ETag never matches)."""
    return etag if etag and not etag.startswith("W/") else last_modified
