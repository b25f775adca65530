"""Transports: they only move bytes, chosen once from the URL's scheme.

A transport opens a URL at an offset and hands back the bytes with what identifies their
version (an ETag, Last-Modified, or size and time of a local file). Everything else (the
part file, resume, retries, hashing, the final rename) is done once, by
:func:`brinelite.download.fetch`, which picks the transport once from the URL's scheme
(:func:`brinelite.download.choose`), as pooch's ``choose_downloader`` or requests' adapters:

- ``http://``, ``https://``: :class:`HTTPTransport` (Range + If-Range, no Content-Encoding undone);
- ``s3://``: :class:`brinelite.s3.S3Transport` (Range + If-Match, boto3 imported only then);
- ``file://`` or a local path: :class:`FileTransport`.

A transport raises :class:`Transient` for what another attempt may fix, and a
:class:`~brinelite.errors.BrineliteError` for the rest.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit
from urllib.request import url2pathname

import requests
import urllib3

from .errors import AuthError, DownloadError
from .hashes import CHUNK
from .http_policy import DOWNLOADS
from .redact import redact_url

_CONTENT_RANGE = re.compile(r"bytes (\d+)-\d+/(\d+)")
# A connection refused, reset or timed out, or a body cut short; another attempt may succeed.
_NETWORK_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.HTTPError,
)


class Transient(Exception):
    """An attempt failed in a way another attempt may fix.

    ``restart``: the part on disk cannot be continued (the file changed); ``retry_after``:
    the seconds the server asked to wait (HTTP ``Retry-After``), if it said.
    """

    def __init__(self, message: str, *, restart: bool = False, retry_after: float | None = None):
        super().__init__(message)
        self.restart = restart
        self.retry_after = retry_after


@dataclass
class Opened:
    """An open body: bytes from ``start`` (0, or the offset asked for when it continues)."""

    start: int
    total: int | None
    validator: str | None  # identifies this version of the file, to resume only the same one
    chunks: Iterator[bytes]
    close: Callable[[], None]


class Transport(Protocol):
    """Opens a URL at an offset; ``network`` says whether it needs the network."""

    network: bool

    def open(self, url: str, offset: int, validator: str | None) -> Opened: ...

    def close(self) -> None: ...


class HTTPTransport:
    """HTTP(S) through one requests session; proxies and .netrc come from the environment."""

    network = True

    def __init__(self, headers: dict[str, str], timeout: float) -> None:
        self.headers = headers
        self.timeout = timeout
        self.session = DOWNLOADS.session()  # the retries are fetch's, which resumes between them

    def open(self, url: str, offset: int, validator: str | None) -> Opened:
        """GET ``url``, from ``offset`` with ``Range`` + ``If-Range`` when resuming."""
        headers = {**self.headers, "Accept-Encoding": "identity"}
        if offset:
            headers |= {"Range": f"bytes={offset}-", "If-Range": validator or ""}
        try:
            response = self.session.get(url, headers=headers, stream=True, timeout=self.timeout)
        except _NETWORK_ERRORS as exc:
            raise Transient(str(exc)) from exc
        except requests.RequestException as exc:  # a bad URL, too many redirects, ...
            raise DownloadError(f"Cannot download {redact_url(url)}: {exc}.") from exc
        try:
            start, total = _range(url, response, offset)
        except BaseException:
            response.close()
            raise
        etag = response.headers.get("ETag")
        strong = etag if etag and not etag.startswith("W/") else None  # weak ones never match
        return Opened(
            start,
            total,
            strong or response.headers.get("Last-Modified"),
            _body(response),
            response.close,
        )

    def close(self) -> None:
        """Close the session's connections."""
        self.session.close()


def _range(url: str, response: requests.Response, offset: int) -> tuple[int, int | None]:
    """(first byte, total size) of an accepted answer; the right error for the others."""
    status = response.status_code
    if status == 200:
        length = response.headers.get("Content-Length", "")
        return 0, int(length) if length.isdigit() else None
    if status == 206 and offset:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
        if match and int(match[1]) == offset:
            return offset, int(match[2])
    if status in (206, 416):
        raise Transient(f"HTTP {status} with a range that does not continue the part", restart=True)
    shown = redact_url(url)
    if status in (401, 403):
        raise AuthError(DOWNLOADS.refused(shown, response.url, status))
    if status == 404:
        raise DownloadError(f"{shown} was not found (HTTP 404); check the URL.")
    if status in DOWNLOADS.retry_status:
        raise Transient(f"HTTP {status}", retry_after=_retry_after(response))
    raise DownloadError(f"Download of {shown} failed with HTTP {status} {response.reason}.")


def _retry_after(response: requests.Response) -> float | None:
    """The wait a 429/503 asked for: ``Retry-After`` in seconds or as an HTTP date."""
    value = response.headers.get("Retry-After", "").strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _body(response: requests.Response) -> Iterator[bytes]:
    """The body in 1 MiB chunks, exactly as sent (a Content-Encoding is not undone)."""
    if response.headers.get("Content-Encoding", "identity").lower() != "identity":
        chunks = response.raw.stream(CHUNK, decode_content=False)
    else:
        chunks = response.iter_content(CHUNK)
    try:
        yield from chunks
    except _NETWORK_ERRORS as exc:
        raise Transient(f"connection lost: {exc}") from exc


class FileTransport:
    """A local file (a path or ``file://`` URL): resumable while its size and mtime hold."""

    network = False

    def open(self, url: str, offset: int, validator: str | None) -> Opened:
        """Open the file, at ``offset`` if it is still the version ``validator`` names."""
        path = local_path(url)
        try:
            handle = path.open("rb")
        except OSError as exc:
            raise DownloadError(f"Cannot read {path}: {exc.strerror}.") from exc
        stat = path.stat()
        version = f"{stat.st_size}-{stat.st_mtime_ns}"
        start = offset if offset and validator == version else 0
        handle.seek(start)
        return Opened(
            start, stat.st_size, version, iter(lambda: handle.read(CHUNK), b""), handle.close
        )

    def close(self) -> None:
        """Nothing to close between files."""


def local_path(url: str) -> Path:
    """The path a ``file://`` URL (on this host) or a plain path names."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "file":
        return Path(url)
    if parts.netloc not in ("", "localhost"):
        raise DownloadError(f"{url} names another host; file:// URLs must be local.")
    return Path(url2pathname(parts.path))
