"""``brinelite serve``: a registry folder served read-only over HTTP for a team.

A :class:`http.server.ThreadingHTTPServer` answering GET and HEAD for regular files inside
the root only: paths with ``..`` (or any part starting with a dot), backslashes, NUL bytes or
leading through a symlink outside the root get 404 (400 when malformed), and no directory is
ever listed. Files carry
``Content-Length``, ``ETag`` and ``Last-Modified``; a single ``Range`` (guarded by
``If-Range``) resumes a download (an invalid one such as ``bytes=5-2`` is ignored: 200);
``If-None-Match`` (``*`` too) and ``If-Modified-Since`` give 304. A client has ``timeout``
seconds (30 by default) to send each whole request, however it trickles it, and a
connection silent that long is closed; a body must be taken at ``MIN_SEND_RATE`` (16 KiB/s)
on average, after that ``timeout``. At most ``max_connections`` (64) are served at once;
one more gets ``503`` with ``Retry-After``. A path over 4096 bytes gets 414; a Range of
absurd numbers is read as past the end (416) rather than parsed.
Each request is logged on stderr.
"""

from __future__ import annotations

import contextlib
import email.utils
import io
import math
import re
import socket
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from .errors import RegistryError
from .paths import UnsafePathError, inside

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
DEFAULT_TIMEOUT = 30.0  # seconds to send a whole request, and to stay silent
DEFAULT_MAX_CONNECTIONS = 64
MIN_SEND_RATE = 16 << 10  # bytes a second a client must take a body at, on average
_CHUNK = 64 << 10
MAX_TARGET = 4096  # bytes in a request's path and query; longer gets 414
_DIGITS = 18  # a byte position with more digits is past any file (and int() has a limit)
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n"
    b"Connection: close\r\n\r\n"
)


class _Deadline(socket.SocketIO):
    """A socket reader that gives a whole request ``timeout`` seconds, not each ``recv``.

    Without it a client sending one byte a second never meets a per-``recv`` timeout and
    holds its thread forever (slowloris).
    """

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        super().__init__(sock, "rb")
        self.timeout = timeout
        self.ends = math.inf

    def readinto(self, buffer) -> int | None:  # type: ignore[override]
        left = self.ends - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request took too long to arrive")
        self._sock.settimeout(min(self.timeout, left))
        return super().readinto(buffer)


class RegistryHandler(BaseHTTPRequestHandler):
    """Serves the files under ``server.root``; nothing else."""

    server: RegistryServer
    server_version = "brinelite"
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        # StreamRequestHandler puts ``timeout`` on the socket: a client idle (or stalled half-way
        # through its request) that long is logged as timed out and disconnected; the reader
        # below also bounds the time the whole request may take to arrive.
        self.timeout = self.server.connection_timeout
        super().setup()
        self._reader = _Deadline(self.connection, self.timeout)
        self.rfile = io.BufferedReader(self._reader)

    def handle_one_request(self) -> None:
        self._reader.ends = time.monotonic() + self.timeout
        super().handle_one_request()

    def parse_request(self) -> bool:
        parsed = super().parse_request()  # the request line and headers have arrived
        self._reader.ends = math.inf
        self.connection.settimeout(self.timeout)  # sending: each write gets the timeout
        if parsed and len(self.path) > MAX_TARGET:
            self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
            return False
        return parsed

    def do_HEAD(self) -> None:  # noqa: N802 (http.server's naming)
        self._serve(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._serve(body=True)

    def _file(self) -> Path | None:
        """The regular file the request names inside the root, or None (after an error)."""
        raw = urlsplit(self.path).path
        if not raw.startswith("/"):
            self.send_error(HTTPStatus.BAD_REQUEST)
            return None
        try:
            path = inside(self.server.root, unquote(raw)[1:], normalise=True)
            hidden = any(part.startswith(".") for part in path.relative_to(self.server.root).parts)
            found = not hidden and path.is_file()  # hidden: temporary and lock files
        except UnsafePathError as exc:
            self.send_error(HTTPStatus.NOT_FOUND if exc.escapes else HTTPStatus.BAD_REQUEST)
            return None
        except OSError:  # a name too long for the file system, a loop of links...
            found = False
        if not found:
            self.send_error(HTTPStatus.NOT_FOUND)
            return None
        return path

    def _serve(self, body: bool) -> None:
        path = self._file()
        if path is None:
            return
        stat = path.stat()
        etag = f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"'
        modified = email.utils.formatdate(stat.st_mtime, usegmt=True)
        if self._not_modified(etag, stat.st_mtime):
            self.send_response(HTTPStatus.NOT_MODIFIED)
            self._validators(etag, modified)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start, end = self._range(stat.st_size, etag, modified)
        if start is None:
            return
        partial = (start, end) != (0, stat.st_size - 1)
        self.send_response(HTTPStatus.PARTIAL_CONTENT if partial else HTTPStatus.OK)
        self._validators(etag, modified)
        if partial:
            self.send_header("Content-Range", f"bytes {start}-{end}/{stat.st_size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Content-Type", _content_type(path))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if body:
            with path.open("rb") as data:
                data.seek(start)
                self.copy_body(data, end - start + 1)

    def copy_body(self, data: BinaryIO, length: int) -> None:
        """Send ``length`` bytes of ``data`` (a hook that tests can override to cut a body).

        The client has ``timeout`` seconds plus one per ``server.min_send_rate`` bytes to take
        it all: one reading a byte at a time never meets a per-send timeout, and would hold
        its thread (and a connection slot) forever.
        """
        ends = time.monotonic() + self.timeout + length / self.server.min_send_rate
        source = _Limited(data, length)
        while chunk := source.read(_CHUNK):
            left = ends - time.monotonic()
            if left <= 0:
                raise TimeoutError("the client took the body too slowly")  # logged, closed
            self.connection.settimeout(min(self.timeout, left))  # sendall's whole duration
            self.wfile.write(chunk)

    def _validators(self, etag: str, modified: str) -> None:
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", modified)

    def _not_modified(self, etag: str, mtime: float) -> bool:
        if "If-None-Match" in self.headers:  # "*" matches any current file (RFC 9110 13.1.2)
            tags = [tag.strip() for tag in self.headers["If-None-Match"].split(",")]
            return "*" in tags or etag in tags
        since = self.headers.get("If-Modified-Since")
        try:
            return (
                since is not None
                and int(mtime) <= email.utils.parsedate_to_datetime(since).timestamp()
            )
        except (TypeError, ValueError):
            return False

    def _range(self, size: int, etag: str, modified: str) -> tuple[int | None, int]:
        """The byte span to send: all of it, unless a valid Range for this version asks less."""
        wanted = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if wanted is None or (if_range is not None and if_range not in (etag, modified)):
            return 0, size - 1
        match = _RANGE.fullmatch(wanted.strip())
        if match is None or match.groups() == ("", ""):
            return 0, size - 1  # a multi-range or malformed header: send the whole file
        first, last = (_position(group) for group in match.groups())
        if first is not None and last is not None and last < first:
            return 0, size - 1  # an invalid range is ignored (RFC 9110 14.2): the whole file
        if first is not None:
            start, end = first, min(last, size - 1) if last is not None else size - 1
        else:
            start, end = max(size - (last or 0), 0), size - 1
        if start >= size or start > end:
            self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None, 0
        return start, end

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        sys.stderr.write(
            f"{self.address_string()} [{self.log_date_time_string()}] {format % args}\n"
        )


def _position(digits: str) -> int | None:
    """A Range byte position; one of more than 18 digits is past any file (``math.inf``)."""
    if not digits:
        return None
    return int(digits) if len(digits) <= _DIGITS else math.inf  # type: ignore[return-value]


class _Limited:
    """A reader of at most ``left`` bytes of a file."""

    def __init__(self, data: BinaryIO, left: int) -> None:
        self.data, self.left = data, left

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        chunk = self.data.read(size)
        self.left -= len(chunk)
        return chunk


def _content_type(path: Path) -> str:
    return {".json": "application/json", ".gz": "application/gzip"}.get(
        path.suffix, "application/octet-stream"
    )


class RegistryServer(ThreadingHTTPServer):
    """A threaded HTTP server of one registry folder."""

    daemon_threads = True
    min_send_rate = MIN_SEND_RATE

    def __init__(
        self,
        root: Path,
        host: str = "127.0.0.1",
        port: int = 8000,
        handler: type[RegistryHandler] = RegistryHandler,
        timeout: float = DEFAULT_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise RegistryError(f"{root} is not a folder; serve a registry folder.")
        if not (timeout > 0 and math.isfinite(timeout)):
            raise RegistryError(f"The connection timeout must be positive, not {timeout}.")
        if not 0 <= port <= 65535:
            raise RegistryError(f"Port {port} is not between 0 and 65535.")
        if max_connections < 1:
            raise RegistryError(f"max_connections must be at least 1, not {max_connections}.")
        self.connection_timeout = timeout
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__((host, port), handler)

    def process_request(self, request, client_address) -> None:  # noqa: ANN001
        """Serve the connection on a thread of its own, or answer 503 when all are taken."""
        if not self._slots.acquire(blocking=False):
            sys.stderr.write(f"{client_address[0]} refused: too many connections (503)\n")
            with contextlib.suppress(OSError):
                request.setblocking(False)
                request.send(_BUSY)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:  # noqa: ANN001
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    @property
    def url(self) -> str:
        """The base URL teammates put in ``BRINELITE_REGISTRY``."""
        host, port = self.server_address[:2]
        return f"http://{host}:{port}" if ":" not in str(host) else f"http://[{host}]:{port}"


def serve(
    root: Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    timeout: float = DEFAULT_TIMEOUT,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
) -> None:
    """Serve ``root`` until interrupted; print the URL first (port 0 picks a free one).

    ``timeout`` (seconds) disconnects a client that sends nothing for that long, or has not
    sent its whole request after that long, so stalled connections cannot pile up; at most
    ``max_connections`` are served at once (more get 503).
    """
    try:
        server = RegistryServer(root, host, port, timeout=timeout, max_connections=max_connections)
    except OSError as exc:
        raise RegistryError(f"Cannot listen on {host}:{port} ({exc.strerror}).") from exc
    print(server.url, flush=True)
    print(f"Serving {server.root} read-only; press Ctrl+C to stop.", file=sys.stderr, flush=True)
    with server, contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
