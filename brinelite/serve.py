"""``brinelite serve``: a registry folder served read-only over HTTP for a team.

A :class:`http.server.ThreadingHTTPServer` answering GET and HEAD for regular files inside
the root only: paths with ``..`` (or any part starting with a dot), backslashes, NUL bytes or
leading through a symlink outside the root get 404 (400 when malformed), and no directory is
ever listed. Files carry
``Content-Length``, ``ETag`` and ``Last-Modified``; a single ``Range`` (guarded by
``If-Range``) resumes a download (an invalid one such as ``bytes=5-2`` is ignored: 200);
``If-None-Match`` (``*`` too) and ``If-Modified-Since`` give 304. A connection silent for
``timeout`` seconds (30 by default) is closed.
Each request is logged on stderr.
"""

from __future__ import annotations

import contextlib
import email.utils
import re
import shutil
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from .errors import RegistryError
from .paths import UnsafePathError, inside

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
DEFAULT_TIMEOUT = 30.0  # seconds a connection may stay silent


class RegistryHandler(BaseHTTPRequestHandler):
    """Serves the files under ``server.root``; nothing else."""

    server: RegistryServer
    server_version = "brinelite"
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        # StreamRequestHandler puts ``timeout`` on the socket: a client idle (or stalled half-way
        # through its request) that long is logged as timed out and disconnected.
        self.timeout = self.server.connection_timeout
        super().setup()

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
        except UnsafePathError as exc:
            self.send_error(HTTPStatus.NOT_FOUND if exc.escapes else HTTPStatus.BAD_REQUEST)
            return None
        hidden = any(part.startswith(".") for part in path.relative_to(self.server.root).parts)
        if hidden or not path.is_file():  # hidden: temporary and lock files
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
        """Send ``length`` bytes of ``data`` (a hook that tests can override to cut a body)."""
        shutil.copyfileobj(_Limited(data, length), self.wfile)

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
        first, last = match.groups()
        if first and last and int(last) < int(first):
            return 0, size - 1  # an invalid range is ignored (RFC 9110 14.2): the whole file
        if first:
            start, end = int(first), min(int(last), size - 1) if last else size - 1
        else:
            start, end = max(size - int(last), 0), size - 1
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

    def __init__(
        self,
        root: Path,
        host: str = "127.0.0.1",
        port: int = 8000,
        handler: type[RegistryHandler] = RegistryHandler,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise RegistryError(f"{root} is not a folder; serve a registry folder.")
        if not timeout > 0:
            raise RegistryError(f"The connection timeout must be positive, not {timeout}.")
        self.connection_timeout = timeout
        super().__init__((host, port), handler)

    @property
    def url(self) -> str:
        """The base URL teammates put in ``BRINELITE_REGISTRY``."""
        host, port = self.server_address[:2]
        return f"http://{host}:{port}" if ":" not in str(host) else f"http://[{host}]:{port}"


def serve(
    root: Path, host: str = "127.0.0.1", port: int = 8000, timeout: float = DEFAULT_TIMEOUT
) -> None:
    """Serve ``root`` until interrupted; print the URL first (port 0 picks a free one).

    ``timeout`` (seconds) disconnects a client that sends nothing for that long, idle or
    half-way through a request, so stalled connections cannot pile up.
    """
    try:
        server = RegistryServer(root, host, port, timeout=timeout)
    except OSError as exc:
        raise RegistryError(f"Cannot listen on {host}:{port} ({exc.strerror}).") from exc
    print(server.url, flush=True)
    print(f"Serving {server.root} read-only; press Ctrl+C to stop.", file=sys.stderr, flush=True)
    with server, contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
