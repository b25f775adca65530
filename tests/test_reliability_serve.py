"""Reliability (issue 11.11): ``brinelite serve`` against slow clients and odd conditionals.

A real server on 127.0.0.1 with raw sockets, so nothing normalises the requests.
"""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Iterator

import pytest

from brinelite.serve import RegistryServer

BODY = bytes(range(256)) * 4


@pytest.fixture
def served(tmp_path) -> Iterator[tuple[str, int]]:
    """A registry folder with one 1 KiB file, served with a 0.3 s connection timeout."""
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
    connection = http.client.HTTPConnection(*address, timeout=10)
    try:
        connection.request("GET", "/data.bin", headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.parametrize("sent", [b"", b"GET /data.bin HTTP/1.1\r\nHost: x\r\n"])
def test_idle_and_half_sent_connections_are_closed(served, sent):
    """Idle, or stopped half-way through the headers: closed after the timeout (was: held)."""
    with socket.create_connection(served, timeout=10) as client:
        client.sendall(sent)
        assert client.recv(1024) == b""  # the server hung up; the old one never did


def test_invalid_range_is_ignored(served):
    """RFC 9110 14.2: a range whose last byte is before its first is ignored (was: 416)."""
    assert _get(served, {"Range": "bytes=5-2"}) == (200, BODY)
    assert _get(served, {"Range": "bytes=5-9"}) == (206, BODY[5:10])


def test_if_none_match_star_is_not_modified(served):
    """``If-None-Match: *`` matches any existing file: 304 (was: 200 with the body)."""
    assert _get(served, {"If-None-Match": "*"}) == (304, b"")
    assert _get(served, {"If-None-Match": '"other"'}) == (200, BODY)


def test_timeout_must_be_positive(tmp_path):
    from brinelite.errors import RegistryError

    with pytest.raises(RegistryError, match="positive"):
        RegistryServer(tmp_path, port=0, timeout=0)
