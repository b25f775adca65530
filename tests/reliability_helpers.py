"""Helpers of the reliability suite (issue 7): cache snapshots, generated datasets, and a
real HTTP server on 127.0.0.1 that counts what it sends and injects faults on demand."""

from __future__ import annotations

import hashlib
import http.server
import os
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

import brinelite

_sleep = time.sleep  # tests may replace time.sleep; the server keeps the real one


def snapshot(home: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under ``home/datasets`` (the invariant)."""
    root = Path(home) / "datasets"
    found = {}
    for path in sorted(root.rglob("*")) if root.is_dir() else ():
        if path.is_file() or path.is_symlink():
            found[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif path.is_dir():
            found[path.relative_to(root).as_posix() + "/"] = "dir"
    return found


def staging_left(home: Path) -> list[str]:
    """Staging folders still present under ``home/tmp`` (none after a finished install)."""
    tmp = Path(home) / "tmp"
    return sorted(p.name for p in tmp.iterdir()) if tmp.is_dir() else []


def smooth_pairs(dest: Path, count: int, size: int = 256, seed: int = 0) -> Path:
    """``count`` blurred-noise RGB images (PNG barely compresses them) with threshold masks."""
    rng = np.random.default_rng(seed)
    (dest / "images").mkdir(parents=True, exist_ok=True)
    (dest / "masks").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        noise = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        image = cv2.GaussianBlur(noise, (0, 0), 1.2)
        mask = np.where(cv2.GaussianBlur(noise[:, :, 0], (0, 0), 6) > 128, 255, 0).astype(np.uint8)
        cv2.imwrite(str(dest / "images" / f"{i:03d}.png"), image)
        cv2.imwrite(str(dest / "masks" / f"{i:03d}.png"), mask)
    return dest


def build_dataset(src: Path, out: Path, name: str, version: str = "1.0.0") -> Path:
    """A real dataset archive built by ``brinelite.build``."""
    brinelite.build(src, name, version, out)
    return out


# --- HTTP ------------------------------------------------------------------------------


@dataclass
class Request:
    """One request the server answered: what was asked and how many body bytes went out."""

    path: str
    headers: dict[str, str]
    status: int = 0
    sent: int = 0


@dataclass
class Site:
    """What the server serves and how it misbehaves.

    ``files`` maps URL paths to bytes, ``root`` serves a folder. ``faults`` maps a path to a
    list of faults consumed one per request: ``500``/``503`` (a status), ``"reset:F"``
    (send fraction F of the body, then a TCP reset), ``"short:F"`` (send fraction F, then
    close normally: fewer bytes than Content-Length), ``"slow:S"`` (wait S seconds before
    answering), ``"html"`` (an HTML page with status 200). ``chunk``/``delay`` throttle bodies.
    """

    files: dict[str, bytes] = field(default_factory=dict)
    root: Path | None = None
    faults: dict[str, list] = field(default_factory=dict)
    chunk: int = 64 * 1024
    delay: float = 0.0
    log: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def body(self, path: str) -> bytes | None:
        if path in self.files:
            return self.files[path]
        if self.root is not None:
            target = (self.root / path.lstrip("/")).resolve()
            if target.is_relative_to(self.root.resolve()) and target.is_file():
                return target.read_bytes()
        return None

    def gets(self, path: str) -> list[Request]:
        return [r for r in self.log if r.path == path]

    def sent(self, path: str | None = None) -> int:
        return sum(r.sent for r in self.log if path is None or r.path == path)


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "reliability"

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        site: Site = self.server.site  # type: ignore[attr-defined]
        path = self.path.split("?")[0]
        record = Request(path, dict(self.headers))
        with site.lock:
            site.log.append(record)
            queue = site.faults.get(path)
            fault = queue.pop(0) if queue else None
        if isinstance(fault, str) and fault.startswith("slow:"):
            _sleep(float(fault[5:]))
            fault = None
        if isinstance(fault, int):
            return self._answer(record, fault, b"server trouble\n", "text/plain")
        if fault == "html":
            page = b"<!DOCTYPE html><html><body>Please log in</body></html>\n"
            return self._answer(record, 200, page, "text/html")
        data = site.body(path)
        if data is None:
            return self._answer(record, 404, b"not found\n", "text/plain")
        etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        start, status = 0, 200
        wanted = self.headers.get("Range", "")
        if wanted.startswith("bytes=") and self.headers.get("If-Range") in (None, etag):
            start, status = int(wanted[6:].split("-")[0]), 206
        body = data[start:]
        headers = {"ETag": etag, "Accept-Ranges": "bytes"}
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        cut = None
        if isinstance(fault, str) and fault.split(":")[0] in ("reset", "short"):
            cut = int(len(body) * float(fault.split(":")[1]))
        self._answer(record, status, body, "application/octet-stream", headers, cut, fault)

    def _answer(self, record, status, body, kind, headers=None, cut=None, fault=None) -> None:
        site: Site = self.server.site  # type: ignore[attr-defined]
        record.status = status
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        limit = len(body) if cut is None else cut
        offset = 0
        try:
            while offset < limit:
                piece = body[offset : min(limit, offset + site.chunk)]
                self.wfile.write(piece)
                offset += len(piece)
                record.sent = offset
                if site.delay:
                    _sleep(site.delay)
            self.wfile.flush()
        except OSError:  # the client went away (e.g. killed)
            return
        if cut is not None and fault.startswith("reset"):
            _sleep(0.2)  # let the client read what was sent: a reset drops unread data
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        if cut is not None:
            self.close_connection = True


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:  # resets are expected
        pass


class Serving:
    """A running server on 127.0.0.1 for one :class:`Site`; use as a context manager."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.site = site  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def __enter__(self) -> Serving:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (a server that is down)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def subprocess_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``python -m brinelite`` child using cache ``home``."""
    env = {k: v for k, v in os.environ.items() if "PROXY" not in k.upper()}
    env.update(BRINELITE_HOME=str(home), NO_COLOR="1", **extra)
    env.pop("BRINELITE_REGISTRY", None)
    env.update(extra)
    return env
