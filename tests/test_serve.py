"""`brinelite serve` and installing over HTTP: containment, Range, validators, resume, retries, auth."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import HANG_GUARD, make_pairs
from pytest_httpserver import HTTPServer
from test_registry import build
from werkzeug import Request, Response

import brinelite
from brinelite import publishing
from brinelite.serve import RegistryHandler, RegistryServer

ARCHIVE = "/lab/cells/cells-1.0.0.tar.gz"
MIB = 1 << 20


@pytest.fixture
def reg(tmp_path) -> Path:
    """A folder registry holding lab/cells@1.0.0, beside a secret file outside it."""
    root = tmp_path / "reg"
    publishing.publish(build(tmp_path, "lab/cells", "1.0.0"), str(root))
    (tmp_path / "secret.txt").write_text("outside the registry\n")
    return root


def running(root: Path, handler: type[RegistryHandler] = RegistryHandler) -> Iterator[str]:
    server = RegistryServer(root, port=0, handler=handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.url
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def served(reg) -> Iterator[str]:
    yield from running(reg)


def get(url: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    """A raw request: the path is sent exactly as given, never normalised by a client."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=HANG_GUARD)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_binds_loopback_by_default(reg):
    server = RegistryServer(reg, port=0)
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.server_close()


@pytest.mark.parametrize(
    "path",
    [
        "/../secret.txt",
        "/../../etc/passwd",
        "/%2e%2e/secret.txt",
        "/%2E%2E/%2E%2E/etc/passwd",
        "/lab/..%2f..%2fsecret.txt",
        "/lab/%2e%2e/%2e%2e/secret.txt",
        "/",
        "/lab/",
        "/lab/cells",
        "/lab/cells/.registry.lock",
        "/link/secret.txt",
    ],
)
def test_nothing_outside_the_root_and_no_listing(reg, served, path):
    (reg / "link").symlink_to(reg.parent, target_is_directory=True)
    status, _, body = get(served, path)
    assert status == 404
    assert b"outside the registry" not in body and b"cells-1.0.0" not in body


@pytest.mark.parametrize("path", ["/..%5csecret.txt", "/lab%00/x", "secret.txt"])
def test_malformed_paths_are_bad_requests(served, path):
    assert get(served, path)[0] == 400


def test_range_validators_and_length(reg, served):
    data = (reg / ARCHIVE.lstrip("/")).read_bytes()
    status, headers, body = get(served, ARCHIVE)
    assert status == 200 and body == data and headers["Content-Length"] == str(len(data))
    etag, modified = headers["ETag"], headers["Last-Modified"]

    status, headers, body = get(served, ARCHIVE, {"Range": "bytes=100-199"})
    assert status == 206 and body == data[100:200]
    assert headers["Content-Range"] == f"bytes 100-199/{len(data)}"
    assert headers["Content-Length"] == "100"
    assert get(served, ARCHIVE, {"Range": "bytes=-10"})[2] == data[-10:]
    resumed = get(served, ARCHIVE, {"Range": "bytes=1000-", "If-Range": etag})
    assert resumed[0] == 206 and resumed[2] == data[1000:]
    stale = get(served, ARCHIVE, {"Range": "bytes=1000-", "If-Range": '"other"'})
    assert stale[0] == 200 and stale[2] == data
    assert get(served, ARCHIVE, {"Range": f"bytes={len(data)}-"})[0] == 416
    assert get(served, ARCHIVE, {"If-None-Match": etag})[0] == 304
    assert get(served, ARCHIVE, {"If-Modified-Since": modified})[0] == 304
    index = get(served, "/lab/cells/index.json")
    assert json.loads(index[2])["name"] == "lab/cells"


class CutOnce(RegistryHandler):
    """Drops the connection after the first MiB of the first archive body; counts bytes sent."""

    sent = 0
    ranges: list[str | None] = []

    def copy_body(self, data, length):
        if not self.path.endswith(".tar.gz"):
            return super().copy_body(data, length)
        CutOnce.ranges.append(self.headers.get("Range"))
        if len(CutOnce.ranges) == 1:
            self.wfile.write(data.read(MIB))
            CutOnce.sent += MIB
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return None
        CutOnce.sent += length
        return super().copy_body(data, length)


def test_install_resumes_after_a_cut_connection(tmp_path, monkeypatch):
    reg = tmp_path / "big"
    src = make_pairs(tmp_path / "noise", count=4, size=(400, 400))
    archive = brinelite.build(src, "lab/noise", "1.0.0", tmp_path / "noise.tar.gz").archive
    assert archive.stat().st_size > 1.2 * MIB
    publishing.publish(archive, str(reg))
    for url in running(reg, CutOnce):
        monkeypatch.setenv("BRINELITE_REGISTRY", url)
        installed = brinelite.install("lab/noise", quiet=True)
    assert installed.sha256 == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert CutOnce.ranges == [None, f"bytes={MIB}-"]
    assert CutOnce.sent == archive.stat().st_size  # every byte sent once: the retry resumed
    assert len(brinelite.load_dataset("lab/noise")) == 4


@pytest.fixture
def index_and_archive(tmp_path) -> tuple[dict, bytes]:
    archive = build(tmp_path, "lab/cells", "1.0.0")
    reg = tmp_path / "reg"
    publishing.publish(archive, str(reg))
    return json.loads((reg / "lab/cells/index.json").read_text()), archive.read_bytes()


def test_retries_on_503(httpserver, index_and_archive, monkeypatch):
    index, data = index_and_archive
    for path in ("/lab/cells/index.json", ARCHIVE):
        httpserver.expect_oneshot_request(path).respond_with_data("busy", status=503)
    httpserver.expect_request("/lab/cells/index.json").respond_with_json(index)
    httpserver.expect_request(ARCHIVE).respond_with_data(data)
    monkeypatch.setenv("BRINELITE_REGISTRY", httpserver.url_for("/"))

    assert brinelite.install("lab/cells", quiet=True).sha256 == index["versions"]["1.0.0"]["sha256"]
    statuses = [(request.path, response.status_code) for request, response in httpserver.log]
    assert statuses.count((ARCHIVE, 503)) == 1 and statuses.count((ARCHIVE, 200)) == 1
    assert statuses.count(("/lab/cells/index.json", 503)) == 1


def test_token_goes_to_the_registry_host_only(httpserver, index_and_archive, monkeypatch):
    index, data = index_and_archive
    elsewhere = HTTPServer(host="127.0.0.1")  # another host name than `localhost`
    elsewhere.expect_request("/blob").respond_with_data(data)
    elsewhere.start()
    try:
        httpserver.expect_request(
            "/lab/cells/index.json", headers={"Authorization": "Bearer t0ken"}
        ).respond_with_json(index)
        httpserver.expect_request(ARCHIVE).respond_with_response(
            Response(status=302, headers={"Location": elsewhere.url_for("/blob")})
        )
        monkeypatch.setenv("BRINELITE_REGISTRY", httpserver.url_for("/"))
        monkeypatch.setenv("BRINELITE_TOKEN", "t0ken")

        assert brinelite.install("lab/cells", quiet=True).ref.full_name == "lab/cells"
        sent = {request.path: request.headers.get("Authorization") for request, _ in httpserver.log}
        assert sent == {"/lab/cells/index.json": "Bearer t0ken", ARCHIVE: "Bearer t0ken"}
        assert [request.headers.get("Authorization") for request, _ in elsewhere.log] == [None]
    finally:
        elsewhere.clear()
        if elsewhere.is_running():
            elsewhere.stop()


def test_refused_access_names_the_variable_to_set(httpserver, cli, monkeypatch):
    def refuse(request: Request) -> Response:
        return Response("no", status=401 if "Authorization" not in request.headers else 403)

    httpserver.expect_request("/lab/cells/index.json").respond_with_handler(refuse)
    assert (
        cli("registry", "add", "team", httpserver.url_for("/"), "--token-env", "TEAM_TOKEN").code
        == 0
    )

    result = cli("install", "lab/cells")
    assert result.code == 1 and result.err.count("\n") == 1
    assert "HTTP 401" in result.err and "set TEAM_TOKEN" in result.err
    monkeypatch.setenv("TEAM_TOKEN", "wrong")
    assert "HTTP 403" in cli("install", "lab/cells").err


def test_serve_command_prints_its_url_and_logs(reg, tmp_path):
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "brinelite", "serve", str(reg), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        assert get(url, "/lab/cells/index.json")[0] == 200
        assert get(url, "/../secret.txt")[0] == 404
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=HANG_GUARD)
    assert '"GET /lab/cells/index.json HTTP/1.1" 200' in err
    assert '"GET /../secret.txt HTTP/1.1" 404' in err


# --- issue 26.10: hostile requests -------------------------------------------------------


@pytest.fixture
def small(tmp_path) -> Path:
    (tmp_path / "small").mkdir()
    (tmp_path / "small" / "data.bin").write_bytes(bytes(range(256)))
    return tmp_path / "small"


def started(root: Path, **options) -> tuple[RegistryServer, tuple[str, int]]:
    server = RegistryServer(root, port=0, **options)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server, server.server_address[:2]


def stop(server: RegistryServer) -> None:
    server.shutdown()
    server.server_close()


def test_an_over_long_path_is_414_and_a_long_name_404(small):
    server, address = started(small)
    url = f"http://{address[0]}:{address[1]}"
    try:
        assert get(url, "/" + "a" * 6000)[0] == 414  # before: OSError, connection dropped
        assert get(url, "/" + "a" * 300)[0] == 404  # ENAMETOOLONG on lookup
        assert get(url, "/data.bin")[0] == 200
    finally:
        stop(server)


def test_range_numbers_past_any_file_are_416_or_ignored(small):
    server, address = started(small)
    url = f"http://{address[0]}:{address[1]}"
    huge = "9" * 5000  # int() refuses over 4300 digits: before, ValueError and a dropped link
    try:
        assert get(url, "/data.bin", {"Range": f"bytes={huge}-"})[0] == 416
        assert get(url, "/data.bin", {"Range": f"bytes=0-{huge}"})[:1] == (200,)
        status, _, body = get(url, "/data.bin", {"Range": f"bytes=-{huge}"})
        assert (status, body) == (200, bytes(range(256)))
        assert get(url, "/data.bin", {"Range": f"bytes=10-{huge}"})[0] == 206
    finally:
        stop(server)


def _answer(address: tuple[str, int]) -> int | None:
    """The status of a GET on a new connection, or None if the server closed or reset it."""
    try:
        with socket.create_connection(address, timeout=10) as client:
            client.sendall(b"GET /data.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            head = client.recv(64)
    except OSError:
        return None
    return int(head.split()[1]) if head.startswith(b"HTTP/1.1 ") else None


def test_connections_beyond_the_cap_get_503(small):
    server, address = started(small, timeout=60, max_connections=3)
    try:
        idle = [socket.create_connection(address, timeout=10) for _ in range(3)]
        assert _answer(address) in (503, None)  # before: a 4th, 5th ... thread for each
        for client in idle:
            client.close()
        for _attempt in range(200):  # the three threads notice the closes, then free a slot
            if _answer(address) == 200:
                break
            time.sleep(0.05)
        else:
            pytest.fail("no slot was freed after the idle connections closed")
    finally:
        stop(server)


def test_a_request_trickled_byte_by_byte_is_cut_after_the_timeout(small):
    server, address = started(small, timeout=0.5)
    try:
        with socket.create_connection(address, timeout=10) as client:
            client.sendall(b"GET /data.bin HTTP/1.1\r\nX-Slow: ")
            client.setblocking(False)
            for _byte in range(200):  # 20 s of one byte per 0.1 s, each gap far under 0.5 s
                try:
                    client.send(b"a")
                    if client.recv(1024) == b"":
                        break  # the server hung up
                except BlockingIOError:
                    pass  # nothing to read yet: still open
                except OSError:
                    break  # reset by the server
                time.sleep(0.1)
            else:
                pytest.fail("held open for as long as bytes trickled in")  # before
    finally:
        stop(server)


def test_a_body_read_slowly_is_cut_once_below_the_minimum_rate(tmp_path):
    """Before: after the headers each 64 KiB send got a fresh timeout, so a client taking 64
    KiB a little faster than each timeout held its thread and its slot as long as it liked."""
    (tmp_path / "big").mkdir()
    size = 16 << 20  # four times what the server's socket buffer holds at most (tcp_wmem)
    (tmp_path / "big" / "data.bin").write_bytes(bytes(size))
    server, address = started(tmp_path / "big", timeout=1.0)
    server.min_send_rate = 4 << 20  # the whole body in 1 + 4 s, where the client needs 50 s
    received = 0
    try:
        with socket.socket() as client:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)  # no autotuning
            client.settimeout(HANG_GUARD)
            client.connect(address)
            client.sendall(b"GET /data.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            while received < size:
                try:
                    chunk = client.recv(32 << 10)  # 320 KiB/s: 64 KiB well within 1 s
                except ConnectionResetError:
                    break  # cut by the server
                if not chunk:
                    break  # cut by the server
                received += len(chunk)
                time.sleep(0.1)
    finally:
        stop(server)
    assert received < size  # the server hung up before the client took it all


def test_nonsense_server_options_are_one_line_errors(small):
    from brinelite.errors import RegistryError

    for options in ({"timeout": float("inf")}, {"port": 70000}, {"max_connections": 0}):
        with pytest.raises(RegistryError):
            RegistryServer(small, **{"port": 0, **options})


# -- slow clients and odd conditionals (issue 11.11): raw sockets, so nothing normalises the
# requests


BODY = bytes(range(256)) * 4


@pytest.fixture
def served_file(tmp_path) -> Iterator[tuple[str, int]]:
    """A registry folder with one 1 KiB file, served_file with a 0.3 s connection timeout."""
    (tmp_path / "reg").mkdir()
    (tmp_path / "reg" / "data.bin").write_bytes(BODY)
    server = RegistryServer(tmp_path / "reg", port=0, timeout=0.3)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_address[:2]
    finally:
        server.shutdown()
        server.server_close()


def _get(address: tuple[str, int], headers: dict[str, str]) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(*address, timeout=HANG_GUARD)
    try:
        connection.request("GET", "/data.bin", headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.parametrize("sent", [b"", b"GET /data.bin HTTP/1.1\r\nHost: x\r\n"])
def test_idle_and_half_sent_connections_are_closed(served_file, sent):
    """Idle, or stopped half-way through the headers: closed after the timeout (was: held)."""
    with socket.create_connection(served_file, timeout=10) as client:
        client.sendall(sent)
        assert client.recv(1024) == b""  # the server hung up; the old one never did


def test_invalid_range_is_ignored(served_file):
    """RFC 9110 14.2: a range whose last byte is before its first is ignored (was: 416)."""
    assert _get(served_file, {"Range": "bytes=5-2"}) == (200, BODY)
    assert _get(served_file, {"Range": "bytes=5-9"}) == (206, BODY[5:10])


def test_if_none_match_star_is_not_modified(served_file):
    """``If-None-Match: *`` matches any existing file: 304 (was: 200 with the body)."""
    assert _get(served_file, {"If-None-Match": "*"}) == (304, b"")
    assert _get(served_file, {"If-None-Match": '"other"'}) == (200, BODY)


def test_timeout_must_be_positive(tmp_path):
    from brinelite.errors import RegistryError

    with pytest.raises(RegistryError, match="positive"):
        RegistryServer(tmp_path, port=0, timeout=0)
