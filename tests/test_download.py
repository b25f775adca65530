"""Tests for brinelite.download against real HTTP servers on 127.0.0.1 (and `responses` mocks)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import responses
from conftest import Recorder
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from brinelite import download
from brinelite.errors import AuthError, DownloadError, IntegrityError, OfflineError

MIB = 1024**2
DATA = os.urandom(3 * MIB + 5)
DATA_SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def other_host():
    """A second server, on 127.0.0.1 (the `httpserver` fixture listens as `localhost`)."""
    server = HTTPServer(host="127.0.0.1")
    server.start()
    yield server
    server.clear()
    server.stop()


class FileServer:
    """Serves one file with ETag / If-Range / Range support, counting the body bytes it sends.

    ``cut_after`` makes the next ``cuts`` responses stop after that many body bytes while
    promising the full Content-Length, then close the connection (a transfer cut short).
    """

    def __init__(self, data: bytes = DATA, *, etag: str = '"v1"', ranges: bool = True) -> None:
        self.data = data
        self.etag = etag
        self.ranges = ranges
        self.cut_after: int | None = None
        self.cuts = 0
        self.sent = 0
        self.requests: list[dict[str, str]] = []

    def __call__(self, request: Request) -> Response:
        self.requests.append(dict(request.headers))
        start, status = 0, 200
        wanted = request.headers.get("Range", "")
        if self.ranges and wanted and request.headers.get("If-Range") == self.etag:
            start, status = int(wanted.removeprefix("bytes=").rstrip("-")), 206
        body = self.data[start:]
        headers = {"ETag": self.etag, "Content-Length": str(len(body)), "Connection": "close"}
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{len(self.data) - 1}/{len(self.data)}"
        if self.cuts:
            self.cuts -= 1
            body = body[: self.cut_after]
        self.sent += len(body)
        return Response(iter([body]), status=status, headers=headers)  # iter: keep our length


def serve(httpserver: HTTPServer, files: FileServer, path: str = "/data.tar.gz") -> str:
    httpserver.expect_request(path).respond_with_handler(files)
    return httpserver.url_for(path)


def leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.parent.iterdir())


# --- real server -----------------------------------------------------------------------


def test_plain_download_with_sha256(httpserver, tmp_path):
    files = FileServer()
    url = serve(httpserver, files)
    dest = tmp_path / "data.tar.gz"
    progress = Recorder()

    result = download.fetch(url, dest, sha256=DATA_SHA.upper(), progress=progress)

    assert result == download.FetchResult(dest, len(DATA), DATA_SHA)
    assert dest.read_bytes() == DATA
    assert leftovers(dest) == ["data.tar.gz"]
    assert (progress.total, progress.done) == (len(DATA), len(DATA))
    assert files.requests[0]["Accept-Encoding"] == "identity"


def test_wrong_sha256_deletes_the_file(httpserver, tmp_path):
    url = serve(httpserver, FileServer())
    dest = tmp_path / "data.tar.gz"
    wrong = "0" * 64
    with pytest.raises(IntegrityError) as caught:
        download.fetch(url, dest, sha256=wrong)
    assert DATA_SHA in str(caught.value)
    assert wrong in str(caught.value)
    assert leftovers(dest) == []


def test_truncated_body_is_resumed_with_a_range_request(httpserver, tmp_path):
    files = FileServer()
    files.cut_after, files.cuts = MIB + 7, 1
    url = serve(httpserver, files)
    dest = tmp_path / "data.tar.gz"

    result = download.fetch(url, dest, sha256=DATA_SHA, backoff=0.01)

    assert result.sha256 == DATA_SHA
    assert dest.read_bytes() == DATA
    assert len(files.requests) == 2
    resumed_at = int(files.requests[1]["Range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= MIB + 7  # a chunk cut short may be fetched again
    assert files.requests[1]["If-Range"] == '"v1"'
    assert files.sent == MIB + 7 + len(DATA) - resumed_at < 2 * len(DATA)
    assert leftovers(dest) == ["data.tar.gz"]


def test_part_left_by_an_earlier_call_is_resumed(httpserver, tmp_path):
    files = FileServer()
    files.cut_after, files.cuts = 2 * MIB, 1
    url = serve(httpserver, files)
    dest = tmp_path / "data.tar.gz"
    with pytest.raises(DownloadError, match="after 1 attempt "):
        download.fetch(url, dest, sha256=DATA_SHA, retries=0)
    part = dest.with_name("data.tar.gz.part")
    assert part.stat().st_size == 2 * MIB
    record = json.loads(dest.with_name("data.tar.gz.part.json").read_text())
    assert record["url_sha256"] == hashlib.sha256(url.encode()).hexdigest()
    assert url not in json.dumps(record)  # a signed URL's secret never lands on disk

    progress = Recorder()
    result = download.fetch(url, dest, sha256=DATA_SHA, progress=progress)

    assert result.sha256 == DATA_SHA
    assert dest.read_bytes() == DATA
    assert files.requests[1]["Range"] == f"bytes={2 * MIB}-"
    assert files.sent == len(DATA)
    assert (progress.total, progress.done) == (len(DATA), len(DATA))
    assert leftovers(dest) == ["data.tar.gz"]


def test_part_is_not_spliced_with_a_changed_file(httpserver, tmp_path):
    files = FileServer()
    files.cut_after, files.cuts = MIB, 1
    url = serve(httpserver, files)
    dest = tmp_path / "data.tar.gz"
    with pytest.raises(DownloadError):
        download.fetch(url, dest, retries=0)
    files.data, files.etag = os.urandom(2 * MIB), '"v2"'  # the file changed on the server

    result = download.fetch(url, dest)

    assert files.requests[1]["If-Range"] == '"v1"'
    assert dest.read_bytes() == files.data
    assert result.sha256 == hashlib.sha256(files.data).hexdigest()


def test_part_for_another_url_is_not_reused(httpserver, tmp_path):
    files = FileServer()
    url = serve(httpserver, files)
    dest = tmp_path / "data.tar.gz"
    dest.with_name("data.tar.gz.part").write_bytes(b"stale bytes from elsewhere")
    other = hashlib.sha256((url + "?old").encode()).hexdigest()
    record = {"url_sha256": other, "validator": '"v1"', "size": len(DATA)}
    dest.with_name("data.tar.gz.part.json").write_text(json.dumps(record))

    assert download.fetch(url, dest, sha256=DATA_SHA).size == len(DATA)
    assert "Range" not in files.requests[0]


def test_server_ignoring_range_starts_over(httpserver, tmp_path):
    files = FileServer(ranges=False)
    files.cut_after, files.cuts = MIB, 1
    url = serve(httpserver, files)
    dest = tmp_path / "data.tar.gz"

    result = download.fetch(url, dest, sha256=DATA_SHA, backoff=0.01)

    assert result.size == len(DATA)
    assert dest.read_bytes() == DATA
    assert files.requests[1]["Range"] == f"bytes={MIB}-"  # asked, but got a 200
    assert files.sent == MIB + len(DATA)


def test_unsatisfiable_range_starts_over(httpserver, tmp_path):
    files = FileServer()
    files.cut_after, files.cuts = MIB, 1

    def refuse_ranges(request: Request) -> Response:
        if "Range" in request.headers:
            files.requests.append(dict(request.headers))
            return Response(status=416)
        return files(request)

    httpserver.expect_request("/data.tar.gz").respond_with_handler(refuse_ranges)
    dest = tmp_path / "data.tar.gz"
    result = download.fetch(httpserver.url_for("/data.tar.gz"), dest, backoff=0.01)
    assert result.sha256 == DATA_SHA
    assert ["Range" in headers for headers in files.requests] == [False, True, False]


def test_attempts_that_make_progress_do_not_use_up_retries(httpserver, tmp_path):
    files = FileServer()
    files.cut_after, files.cuts = MIB, 3  # four requests needed, each adding 1 MiB
    url = serve(httpserver, files)
    result = download.fetch(url, tmp_path / "data.tar.gz", retries=1, backoff=0.01)
    assert result.sha256 == DATA_SHA
    assert len(files.requests) == 4


def test_content_encoding_is_not_undone(httpserver, tmp_path):
    archive_bytes = gzip.compress(b"tar bytes " * 1000)

    def handler(request: Request) -> Response:
        return Response(archive_bytes, headers={"Content-Encoding": "gzip"})

    httpserver.expect_request("/data.tar.gz").respond_with_handler(handler)
    dest = tmp_path / "data.tar.gz"
    result = download.fetch(httpserver.url_for("/data.tar.gz"), dest)
    assert dest.read_bytes() == archive_bytes
    assert result.sha256 == hashlib.sha256(archive_bytes).hexdigest()


def test_authorization_is_not_sent_to_another_host(httpserver, other_host, tmp_path):
    files = FileServer()
    target = serve(other_host, files)
    httpserver.expect_request("/start").respond_with_response(
        Response(status=302, headers={"Location": target})
    )
    start = httpserver.url_for("/start")
    assert urlsplit(start).hostname != urlsplit(target).hostname

    download.fetch(start, tmp_path / "data.tar.gz", headers={"Authorization": "Bearer s3cret"})

    first_request = httpserver.log[0][0]
    assert first_request.headers["Authorization"] == "Bearer s3cret"
    assert "Authorization" not in files.requests[0]
    assert (tmp_path / "data.tar.gz").read_bytes() == DATA


def test_connection_refused_fails_quickly(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again on exit: nothing listens there
    url = f"http://127.0.0.1:{port}/data.tar.gz"
    began = time.monotonic()
    with pytest.raises(DownloadError, match="after 4 attempts") as caught:
        download.fetch(url, tmp_path / "data.tar.gz", retries=3, backoff=0.01)
    assert time.monotonic() - began < 5
    assert url in str(caught.value)
    assert not isinstance(caught.value, AuthError)


def test_read_timeout_is_retried_then_fails(httpserver, tmp_path):
    def slow(request: Request) -> Response:
        time.sleep(0.8)
        return Response(b"too late")

    httpserver.expect_request("/slow").respond_with_handler(slow)
    began = time.monotonic()
    with pytest.raises(DownloadError, match=r"after 2 attempts .*[Tt]imed? ?out"):
        url = httpserver.url_for("/slow")
        download.fetch(url, tmp_path / "x", timeout=0.5, retries=1, backoff=0.01)
    assert time.monotonic() - began < 5
    assert leftovers(tmp_path / "x") == []


# --- error paths with `responses` ------------------------------------------------------

URL = "https://data.example.org/rohan/chairs/1.0.0.tar.gz"


@pytest.fixture
def mocked():
    with responses.RequestsMock() as mock:
        yield mock


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """Record backoff delays instead of sleeping."""
    delays: list[float] = []
    monkeypatch.setattr(download.time, "sleep", delays.append)
    return delays


@pytest.mark.parametrize("status", [401, 403])
def test_refused_access_is_an_auth_error(status, mocked, sleeps, tmp_path):
    mocked.get(URL, status=status)
    with pytest.raises(AuthError, match=f"HTTP {status}.*BRINELITE_TOKEN.*data.example.org"):
        download.fetch(URL, tmp_path / "x")
    assert len(mocked.calls) == 1
    assert sleeps == []


def test_not_found_is_not_retried(mocked, sleeps, tmp_path):
    mocked.get(URL, status=404)
    with pytest.raises(DownloadError, match=r"not found \(HTTP 404\)") as caught:
        download.fetch(URL, tmp_path / "x")
    assert not isinstance(caught.value, AuthError)
    assert len(mocked.calls) == 1


def test_other_client_error_names_the_status(mocked, sleeps, tmp_path):
    mocked.get(URL, status=410)
    with pytest.raises(DownloadError, match="HTTP 410"):
        download.fetch(URL, tmp_path / "x")
    assert len(mocked.calls) == 1


def test_503_twice_then_success(mocked, sleeps, tmp_path):
    mocked.get(URL, status=503)
    mocked.get(URL, status=503)
    mocked.get(URL, body=b"archive bytes")
    result = download.fetch(URL, tmp_path / "x", backoff=0.25)
    assert (tmp_path / "x").read_bytes() == b"archive bytes"
    assert result.sha256 == hashlib.sha256(b"archive bytes").hexdigest()
    assert len(mocked.calls) == 3
    assert sleeps == [0.25, 0.5]


def test_backoff_is_capped_and_bounded_by_default(mocked, sleeps, tmp_path):
    mocked.get(URL, status=502)
    with pytest.raises(DownloadError, match=f"{URL} failed after 6 attempts.*HTTP 502"):
        download.fetch(URL, tmp_path / "x")
    assert sleeps == [0.5, 1, 2, 4, 8]
    sleeps.clear()
    with pytest.raises(DownloadError):
        download.fetch(URL, tmp_path / "x", backoff=3, retries=3)
    assert sleeps == [3, 6, 10]


def test_retry_after_is_honoured_and_capped(mocked, sleeps, tmp_path):
    mocked.get(URL, status=429, headers={"Retry-After": "7"})
    mocked.get(URL, status=503, headers={"Retry-After": "3600"})
    mocked.get(URL, body=b"archive bytes")
    download.fetch(URL, tmp_path / "x", backoff=0.25)
    assert sleeps == [7, 60]  # as asked, but never more than a minute


def test_local_files_are_fetched_offline_and_the_network_is_not(monkeypatch, tmp_path):
    source = tmp_path / "cells.tar.gz"
    source.write_bytes(DATA)
    monkeypatch.setenv("BRINELITE_OFFLINE", "1")
    for location in (str(source), source.as_uri()):
        result = download.fetch(location, tmp_path / "copy.tar.gz", sha256=DATA_SHA)
        assert result == download.FetchResult(tmp_path / "copy.tar.gz", len(DATA), DATA_SHA)
    with pytest.raises(OfflineError, match="BRINELITE_OFFLINE is set: not downloading"):
        download.fetch("http://127.0.0.1:9/x.tar.gz?sig=secret", tmp_path / "x")
    with pytest.raises(DownloadError, match="unknown scheme 'ftp'"):
        download.fetch("ftp://host/x.tar.gz", tmp_path / "x")


# --- issue 26.5: a declared size, and a cap for downloads of undeclared size ---------------


class Endless:
    """A body of ``head`` then zeros up to ``total`` bytes, counting what the server produced."""

    def __init__(self, head: bytes, total: int, length: bool = False) -> None:
        self.head, self.total, self.length, self.produced = head, total, length, 0

    def __call__(self, request: Request) -> Response:
        headers = {"Content-Length": str(self.total)} if self.length else {}
        return Response(self.chunks(), headers=headers)

    def chunks(self):
        piece = 64 * 1024
        self.produced = len(self.head)
        yield self.head
        while self.produced < self.total:
            self.produced += piece
            yield bytes(piece)


@pytest.fixture
def cells_archive(tmp_path) -> bytes:
    from test_registry import build

    return build(tmp_path, "lab/cells", "1.0.0").read_bytes()


def http_registry(httpserver: HTTPServer, archive: bytes, body: Endless) -> None:
    index = {
        "format_version": 1,
        "name": "lab/cells",
        "versions": {
            "1.0.0": {
                "archive": "cells-1.0.0.tar.gz",
                "sha256": hashlib.sha256(archive).hexdigest(),
                "size": len(archive),
            }
        },
    }
    httpserver.expect_request("/lab/cells/index.json").respond_with_json(index)
    httpserver.expect_request("/lab/cells/cells-1.0.0.tar.gz").respond_with_handler(body)


@pytest.mark.parametrize("length", [False, True], ids=["chunked", "content-length"])
def test_a_body_past_the_declared_size_is_stopped(
    length, httpserver, cells_archive, cli, monkeypatch, brinelite_home
):
    body = Endless(cells_archive, 64 * MIB, length=length)
    http_registry(httpserver, cells_archive, body)
    monkeypatch.setenv("BRINELITE_REGISTRY", httpserver.url_for(""))
    result = cli("install", "lab/cells", "-q")
    assert result.code == 1 and result.err.count("\n") == 1, result.err
    assert f"larger than the {len(cells_archive)} bytes its registry index declares" in result.err
    assert body.produced < 16 * MIB  # before: all 64 MiB were read, then the sha256 refused them
    assert [p.name for p in (brinelite_home / "downloads").iterdir()] == []
    assert not (brinelite_home / "datasets").exists()


def test_a_download_of_undeclared_size_stops_at_the_setting(httpserver, cli, monkeypatch):
    body = Endless(b"", 64 * MIB)
    httpserver.expect_request("/big.tar.gz").respond_with_handler(body)
    monkeypatch.setenv("BRINELITE_MAX_DOWNLOAD_BYTES", str(2 * MIB))
    result = cli("install", httpserver.url_for("/big.tar.gz"), "-q")
    assert result.code == 1 and result.err.count("\n") == 1, result.err
    assert "BRINELITE_MAX_DOWNLOAD_BYTES (2097152 bytes)" in result.err
    assert body.produced < 16 * MIB  # before: all 64 MiB


def test_the_download_cap_has_a_default_and_refuses_nonsense(monkeypatch):
    from brinelite import settings
    from brinelite.errors import BrineliteError

    monkeypatch.delenv("BRINELITE_MAX_DOWNLOAD_BYTES", raising=False)
    assert settings.max_download_bytes() == 20 * 1024**3
    monkeypatch.setenv("BRINELITE_MAX_DOWNLOAD_BYTES", "0")
    assert settings.max_download_bytes() is None
    for bad in ("1e9", "-1", "²", "9" * 5000):
        monkeypatch.setenv("BRINELITE_MAX_DOWNLOAD_BYTES", bad)
        with pytest.raises(BrineliteError, match="BRINELITE_MAX_DOWNLOAD_BYTES"):
            settings.max_download_bytes()


def test_a_declared_size_stops_fetch_and_a_local_file_has_no_cap(httpserver, tmp_path, monkeypatch):
    url = serve(httpserver, FileServer())
    dest = tmp_path / "d" / "data.tar.gz"
    with pytest.raises(IntegrityError, match="declares"):
        download.fetch(url, dest, size=MIB, backoff=0)
    assert leftovers(dest) == []
    monkeypatch.setenv("BRINELITE_MAX_DOWNLOAD_BYTES", "10")
    local = tmp_path / "local.bin"
    local.write_bytes(DATA)
    assert download.fetch(str(local), dest).sha256 == DATA_SHA  # a local file is the user's own
