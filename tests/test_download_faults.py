"""Reliability (issue 7): network and disk faults during ``brinelite.install``.

A real HTTP server on 127.0.0.1 (tests/reliability_helpers.py) resets connections, sends
short bodies, answers 500/503, stalls, or is not there. Each install either completes with
the right content or fails with one clear error and leaves the cache as it was. The unit
tests of the downloader (If-Range, changed files, auth, ...) are in tests/test_download.py.
"""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest
from reliability_helpers import Serving, Site, free_port, smooth_pairs, snapshot, staging_left

import brinelite
from brinelite import archive, download, manifest
from brinelite.errors import CacheError, DownloadError

URL_PATH = "/cells-1.0.0.tar.gz"
ROWS = 24
CHUNK = 1024**2  # the downloader reads 1 MiB at a time: a cut chunk is fetched again


@pytest.fixture(scope="module")
def cells(tmp_path_factory) -> bytes:
    """The bytes of a real 3.3 MB dataset archive (lab/cells@1.0.0, 24 pairs)."""
    tmp = tmp_path_factory.mktemp("cells")
    src = smooth_pairs(tmp / "src", ROWS)
    return brinelite.build(src, "lab/cells", "1.0.0", tmp / "cells.tar.gz").archive.read_bytes()


@pytest.fixture
def populated(brinelite_home, kvasir_src) -> dict[str, str]:
    brinelite.install(str(kvasir_src), name="keep/me@1.0.0", quiet=True)
    return snapshot(brinelite_home)


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """Backoff delays the downloader asked for (recorded, not slept)."""
    asked: list[float] = []
    monkeypatch.setattr(download.time, "sleep", asked.append)
    return asked


@pytest.fixture
def short_timeout(monkeypatch) -> None:
    """Installs time out after 0.5 s of silence instead of 30 s."""
    real = download.fetch

    def fetch(*args, **kwargs):
        return real(*args, **{**kwargs, "timeout": 0.5})

    monkeypatch.setattr(download, "fetch", fetch)


def installed_ok(home: Path, ref: str = "lab/cells") -> None:
    dataset = brinelite.load_dataset(ref)
    manifest.verify(dataset.path, dataset.manifest)
    assert len(dataset) == ROWS


def unchanged(home: Path, before: dict[str, str]) -> None:
    assert snapshot(home) == before
    assert staging_left(home) == []
    assert [p.name for p in (home / "downloads").glob("*") if not p.name.endswith("part")] in (
        [],
        [p.name for p in (home / "downloads").glob("*.part.json")],
    )


@pytest.mark.parametrize("fault", ["reset:0.5", "short:0.6", "reset:0.9", "short:0.4"])
def test_cut_transfer_is_resumed_and_installs(fault, cells, brinelite_home, sleeps):
    site = Site(files={URL_PATH: cells}, faults={URL_PATH: [fault]})
    with Serving(site) as server:
        result = brinelite.install(server.url(URL_PATH), quiet=True)
    assert result.ref.full_name == "lab/cells"
    first, second = site.gets(URL_PATH)
    assert first.sent == int(len(cells) * float(fault.split(":")[1])) < len(cells)
    resumed_at = int(second.headers["Range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= first.sent < resumed_at + CHUNK and second.status == 206
    assert site.sent(URL_PATH) == first.sent + len(cells) - resumed_at  # did not start over
    assert sleeps == [0.5]
    installed_ok(brinelite_home)


def test_download_interrupted_at_60_percent_resumes_in_a_later_install(
    cells, brinelite_home, populated, sleeps
):
    # the first install gets 60%, then the server fails for longer than the retries last
    faults = ["short:0.6", *[503] * 5]
    site = Site(files={URL_PATH: cells}, faults={URL_PATH: faults})
    with Serving(site) as server:
        with pytest.raises(DownloadError, match=r"failed after 6 attempts \(HTTP 503\)"):
            brinelite.install(server.url(URL_PATH), quiet=True)
        assert sleeps == [0.5, 1.0, 2.0, 4.0, 8.0]  # exponential backoff
        unchanged(brinelite_home, populated)
        sent_first = site.gets(URL_PATH)[0].sent
        assert [r.status for r in site.gets(URL_PATH)] == [200] + [503] * 5
        assert sent_first == int(0.6 * len(cells))
        brinelite.install(server.url(URL_PATH), quiet=True)
    last = site.gets(URL_PATH)[-1]
    resumed_at = int(last.headers["Range"].removeprefix("bytes=").rstrip("-"))
    assert sent_first - CHUNK < resumed_at <= sent_first and last.status == 206
    assert last.sent == len(cells) - resumed_at
    body_bytes = sum(r.sent for r in site.gets(URL_PATH) if r.status != 503)
    assert body_bytes == sent_first + len(cells) - resumed_at < len(cells) + CHUNK  # resumed
    installed_ok(brinelite_home)


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_retried_with_backoff(status, cells, brinelite_home, sleeps):
    site = Site(files={URL_PATH: cells}, faults={URL_PATH: [status] * 3})
    with Serving(site) as server:
        brinelite.install(server.url(URL_PATH), quiet=True)
    assert [r.status for r in site.gets(URL_PATH)] == [status] * 3 + [200]
    assert sleeps == [0.5, 1.0, 2.0]
    installed_ok(brinelite_home)


def test_server_errors_beyond_the_retries_fail_cleanly(cells, brinelite_home, populated, sleeps):
    site = Site(files={URL_PATH: cells}, faults={URL_PATH: [500] * 10})
    with Serving(site) as server, pytest.raises(DownloadError, match="after 6 attempts"):
        brinelite.install(server.url(URL_PATH), quiet=True)
    assert len(site.gets(URL_PATH)) == 6
    unchanged(brinelite_home, populated)


def test_slow_server_times_out_then_succeeds(cells, brinelite_home, sleeps, short_timeout):
    site = Site(files={URL_PATH: cells}, faults={URL_PATH: ["slow:1.5"]})
    with Serving(site) as server:
        brinelite.install(server.url(URL_PATH), quiet=True)
    assert len(site.gets(URL_PATH)) == 2 and sleeps == [0.5]
    installed_ok(brinelite_home)


def test_server_that_never_answers_fails_cleanly(
    cells, brinelite_home, populated, sleeps, short_timeout
):
    site = Site(files={URL_PATH: cells}, faults={URL_PATH: ["slow:1.2"] * 6})
    with Serving(site) as server, pytest.raises(DownloadError, match="timed out"):
        brinelite.install(server.url(URL_PATH), quiet=True)
    assert len(site.gets(URL_PATH)) == 6
    unchanged(brinelite_home, populated)


def test_server_that_is_down_fails_cleanly(brinelite_home, populated, sleeps, cli):
    url = f"http://127.0.0.1:{free_port()}/cells.tar.gz"
    result = cli("install", url, "--quiet")
    assert result.code == 1 and "Traceback" not in result.err
    assert result.err.startswith(f"Error: Download of {url} failed after 6 attempts")
    assert "check the network" in result.err
    unchanged(brinelite_home, populated)


def test_wrong_sha256_deletes_the_download_and_names_both_hashes(
    cells, brinelite_home, populated, cli
):
    actual = hashlib.sha256(cells).hexdigest()
    wrong = "0" * 64
    site = Site(files={URL_PATH: cells})
    with Serving(site) as server:
        result = cli("install", server.url(URL_PATH), "--sha256", wrong, "--quiet")
        assert result.code == 1
        assert f"has sha256 {actual}, expected {wrong}" in result.err
        assert "deleted" in result.err
        assert list((brinelite_home / "downloads").iterdir()) == []
        unchanged(brinelite_home, populated)
        assert cli("install", server.url(URL_PATH), "--sha256", actual, "-q").code == 0
    installed_ok(brinelite_home)


# --- disk full, unwritable cache ----------------------------------------------------------


def test_cache_under_a_regular_file_is_a_clear_error(cells, tmp_path, monkeypatch, cli):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache should be\n")
    monkeypatch.setenv("BRINELITE_HOME", str(blocker / "cache"))
    archive_path = tmp_path / "cells.tar.gz"
    archive_path.write_bytes(cells)
    result = cli("install", archive_path)
    assert result.code == 1 and result.err.strip().count("\n") == 0
    assert "Cannot create the cache folder" in result.err
    assert "BRINELITE_HOME" in result.err
    assert blocker.read_text() == "a file where the cache should be\n"


def _enospc_after(monkeypatch, limit: int) -> None:
    """Make archive extraction hit 'No space left on device' after ``limit`` bytes."""
    real = archive._Writer.file

    def file(self, name, data):
        if self.written > limit:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, name, data)

    monkeypatch.setattr(archive._Writer, "file", file)


def test_disk_full_while_extracting_is_a_clear_error(
    cells, brinelite_home, populated, tmp_path, monkeypatch, cli
):
    archive_path = tmp_path / "cells.tar.gz"
    archive_path.write_bytes(cells)
    with monkeypatch.context() as patched:
        _enospc_after(patched, 10_000)
        result = cli("install", archive_path, "-q")
    assert result.code == 1 and result.err.strip().count("\n") == 0
    assert "No space left on device" in result.err and "nothing was installed" in result.err
    unchanged(brinelite_home, populated)
    assert cli("install", archive_path, "-q").code == 0
    installed_ok(brinelite_home)


def test_disk_full_while_downloading_is_a_clear_error(
    cells, brinelite_home, populated, monkeypatch
):
    real_open = Path.open

    def full(self, mode="r", *args, **kwargs):
        if self.name.endswith(".part") and "a" in mode:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", full)
    site = Site(files={URL_PATH: cells})
    with Serving(site) as server, pytest.raises(CacheError, match="No space left on device"):
        brinelite.install(server.url(URL_PATH), quiet=True)
    unchanged(brinelite_home, populated)


def test_disk_full_at_the_final_rename_is_a_clear_error(
    cells, brinelite_home, populated, tmp_path, monkeypatch
):
    archive_path = tmp_path / "cells.tar.gz"
    archive_path.write_bytes(cells)
    from brinelite import cache

    def rename(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as patched, pytest.raises(CacheError, match="nothing was installed"):
        patched.setattr(cache.os, "rename", rename)
        brinelite.install(str(archive_path), quiet=True)
    unchanged(brinelite_home, populated)
    brinelite.install(str(archive_path), quiet=True)  # the next install works
    installed_ok(brinelite_home)


def test_failed_force_reinstall_keeps_the_installed_copy(
    cells, brinelite_home, tmp_path, monkeypatch
):
    archive_path = tmp_path / "cells.tar.gz"
    archive_path.write_bytes(cells)
    brinelite.install(str(archive_path), quiet=True)
    before = snapshot(brinelite_home)
    from brinelite import cache

    real_rename = os.rename
    calls = []

    def rename(src, dst):  # the old copy moves aside, then the new one fails to move in
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_rename(src, dst)

    with monkeypatch.context() as patched, pytest.raises(CacheError, match="No space left"):
        patched.setattr(cache.os, "rename", rename)
        brinelite.install(str(archive_path), force=True, quiet=True)
    assert len(calls) == 3  # the third rename put the installed copy back
    unchanged(brinelite_home, before)
    installed_ok(brinelite_home)
