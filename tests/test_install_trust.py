"""Reliability (issues 11, 12, 13): the install side of trust, through the CLI and public API.

Cleaning while installs run, concurrent installs of one URL, links in dataset folders,
secrets in URLs, pins checked against installed copies, offline installs, lock files.
Every network test uses a real server on 127.0.0.1; subprocesses are real ``brinelite``s.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import HANG_GUARD
from pytest_httpserver import HTTPServer
from reliability_helpers import Serving, Site, free_port, smooth_pairs, snapshot, subprocess_env
from werkzeug import Request, Response

import brinelite
from brinelite import cache, manifest, publishing

ROWS = 6


@pytest.fixture(scope="module")
def cells(tmp_path_factory) -> bytes:
    """A real dataset archive (lab/cells@1.0.0, 6 blurred-noise pairs, about 0.8 MB)."""
    tmp = tmp_path_factory.mktemp("cells")
    src = smooth_pairs(tmp / "src", ROWS, size=192)
    return brinelite.build(src, "lab/cells", "1.0.0", tmp / "cells.tar.gz").archive.read_bytes()


def brinelite_cli(home: Path, *args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "brinelite", *args],
        env=subprocess_env(home, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def one_line_error(result) -> None:
    assert result.code == 1, result.out
    assert result.err.count("\n") == 1 and "Traceback" not in result.err


# --- 13.3: every install prints the archive's sha256 -------------------------------------


def test_unpinned_url_install_records_and_prints_the_sha256(cells, cli, brinelite_home):
    site = Site(files={"/cells.tar.gz": cells})
    with Serving(site) as server:
        result = cli("install", server.url("/cells.tar.gz"), "-q")
    actual = hashlib.sha256(cells).hexdigest()
    assert result.code == 0 and f"sha256 {actual}" in result.out.splitlines()
    record = json.loads((brinelite.load_dataset("lab/cells").path / "install.json").read_text())
    assert record["sha256"] == actual  # was "" before the one fetch core


def test_upper_case_sha256_is_accepted_for_a_local_archive(cells, cli, tmp_path):
    archive = tmp_path / "cells.tar.gz"
    archive.write_bytes(cells)
    result = cli("install", archive, "--sha256", hashlib.sha256(cells).hexdigest().upper())
    assert result.code == 0, result.err
    one_line_error(cli("install", archive, "--force", "--sha256", "xyz"))


# --- 11.4: cache clean spares live installs ----------------------------------------------


def test_cache_clean_skips_what_a_running_install_holds(cells, tmp_path):
    home, half, go_on = tmp_path / "home", len(cells) // 2, threading.Event()

    def stalling(request: Request) -> Response:
        def body():
            yield cells[:half]
            go_on.wait(HANG_GUARD)  # the install sits mid-body until the test lets it go
            yield cells[half:]

        return Response(body(), headers={"Content-Length": str(len(cells)), "ETag": '"v1"'})

    server = HTTPServer(host="127.0.0.1")
    server.expect_request("/cells.tar.gz").respond_with_handler(stalling)
    server.start()
    try:
        install = brinelite_cli(home, "install", server.url_for("/cells.tar.gz"), "-q")
        part = home / "downloads"
        while not any(part.glob("*.part")):  # the body has begun (and stalls at half)
            assert install.poll() is None, install.stderr.read()
            time.sleep(0.05)
        (home / "tmp" / "install-999999999-stale").mkdir()  # a dead pid's leftovers
        cleaner = brinelite_cli(home, "cache", "clean")
        out, err = cleaner.communicate(timeout=HANG_GUARD)
        assert cleaner.returncode == 0, err
        assert "Skipped 3 entries:\n  " in out  # the staging folder, .part, .part.json
        assert "  tmp/install-" in out and "(in use by a running install, process " in out
        assert out.count("(being downloaded: a running install holds its lock)") == 2
        assert not (home / "tmp" / "install-999999999-stale").exists()
        assert len(list(part.glob("*.part"))) == 1 and len(list((home / "tmp").iterdir())) == 1
        go_on.set()
        assert install.wait(HANG_GUARD) == 0, install.stderr.read()
    finally:
        go_on.set()
        server.stop()
    dataset = brinelite.load_dataset(str(home / "datasets" / "lab" / "cells" / "1.0.0"))
    manifest.verify(dataset.path, dataset.manifest)


# --- 11.7: concurrent installs of one URL under different --names -------------------------


def test_six_installers_of_one_url_download_once(cells, tmp_path):
    site = Site(files={"/cells.tar.gz": cells}, chunk=32 * 1024, delay=0.005)
    names = [[], [], ["--name", "lab/cells"], ["--name", "lab/cells"]]
    names += [["--name", "lab/cells@1.0.0"]] * 2
    with Serving(site) as server:
        url = server.url("/cells.tar.gz")
        runs = [brinelite_cli(tmp_path / "home", "install", url, "-q", *n) for n in names]
        results = [(p.wait(HANG_GUARD), p.stdout.read(), p.stderr.read()) for p in runs]
    assert [code for code, _, _ in results] == [0] * 6, [err for _, _, err in results]
    assert len(site.gets("/cells.tar.gz")) == 1  # locked by the URL, not the name
    assert sum("was installed" in out for _, out, _ in results) == 1
    assert list((tmp_path / "home" / "downloads").iterdir()) == []


def test_name_contradicting_the_manifest_is_refused_naming_both(cells, cli, brinelite_home):
    site = Site(files={"/cells.tar.gz": cells})
    with Serving(site) as server:
        before = snapshot(brinelite_home)
        result = cli("install", server.url("/cells.tar.gz"), "--name", "x/n1", "-q")
    one_line_error(result)
    assert "lab/cells@1.0.0" in result.err and "x/n1" in result.err
    assert snapshot(brinelite_home) == before and cache.installed() == []


# --- 11.9: folder installs do not follow links -------------------------------------------


@pytest.fixture
def dataset_folder(pairs_src, tmp_path) -> Path:
    """A dataset folder with its manifest (an installed dataset, copied out)."""
    installed = brinelite.install(str(pairs_src), name="lab/pairs", quiet=True)
    folder = tmp_path / "folder"
    folder.mkdir()
    for path in sorted(installed.path.rglob("*")):
        target = folder / path.relative_to(installed.path)
        target.mkdir() if path.is_dir() else target.write_bytes(path.read_bytes())
    (folder / "install.json").unlink()
    cache.remove(installed.ref)
    return folder


@pytest.mark.parametrize("link", ["outside-file", "loop"])
def test_folder_with_a_manifest_refuses_links(link, dataset_folder, cli, tmp_path, brinelite_home):
    if link == "outside-file":  # same bytes, so the manifest's hash matches
        image = dataset_folder / "images" / "000.png"
        outside = tmp_path / "outside.png"
        outside.write_bytes(image.read_bytes())
        image.unlink()
        image.symlink_to(outside)
    else:
        (dataset_folder / "images" / "loop").symlink_to("..")
    before = snapshot(brinelite_home)
    result = cli("install", dataset_folder)
    one_line_error(result)
    assert "symbolic link" in result.err
    assert snapshot(brinelite_home) == before and cache.installed() == []


# --- 11.10: secrets in URLs ---------------------------------------------------------------


def test_url_credentials_and_query_are_never_stored_or_shown(cells, cli, brinelite_home):
    site = Site(files={"/cells.tar.gz": cells})
    with Serving(site) as server:
        url = server.url("/cells.tar.gz?sig=T0PS3CRET&se=2030").replace("//", "//bob:PASSW0RD@")
        assert cli("install", url, "-q").code == 0
        again = cli("install", url, "-q")
        missing = cli("install", url.replace("cells", "nothing"), "-q")
    assert "already installed" in again.out and len(site.gets("/cells.tar.gz")) == 1
    info = cli("info", "lab/cells")
    stored = "".join(p.read_text() for p in brinelite_home.rglob("*.json"))
    for text in (stored, info.out, again.out, missing.err):
        assert "T0PS3CRET" not in text and "PASSW0RD" not in text
    assert "sig=****" in info.out and "****@127.0.0.1" in info.out
    one_line_error(missing)


# --- issue 12: pins and offline ------------------------------------------------------------


@pytest.fixture
def team_registry(cells, tmp_path) -> Path:
    archive = tmp_path / "cells.tar.gz"
    archive.write_bytes(cells)
    publishing.publish(archive, str(tmp_path / "registry"))
    return tmp_path / "registry"


def test_installed_pinned_version_needs_no_registry(team_registry, cli, monkeypatch):
    site = Site(root=team_registry)
    with Serving(site) as server:
        monkeypatch.setenv("BRINELITE_REGISTRY", server.url(""))
        assert cli("install", "lab/cells@1.0.0", "-q").code == 0
    monkeypatch.setenv("BRINELITE_REGISTRY", f"http://127.0.0.1:{free_port()}")
    result = cli("install", "lab/cells@1.0.0", "-q")  # the registry is down now
    assert result.code == 0, result.err
    assert "already installed" in result.out


def test_unpinned_with_no_registry_reachable_uses_the_newest_installed(
    team_registry, cli, monkeypatch
):
    brinelite.install(str(team_registry / "lab/cells/cells-1.0.0.tar.gz"), quiet=True)
    monkeypatch.setenv("BRINELITE_REGISTRY", f"http://127.0.0.1:{free_port()}")  # down
    result = cli("install", "lab/cells", "-q")
    assert result.code == 0, result.err
    assert "No registry could be reached: using the installed lab/cells@1.0.0" in result.out
    one_line_error(cli("install", "lab/other", "-q"))


def test_offline_installs_what_is_installed_and_refuses_the_rest(cells, cli, tmp_path, monkeypatch):
    archive = tmp_path / "cells.tar.gz"
    archive.write_bytes(cells)
    monkeypatch.setenv("BRINELITE_OFFLINE", "1")
    assert cli("install", archive, "-q").code == 0  # local files still work
    site = Site(files={"/cells.tar.gz": cells})
    with Serving(site) as server:
        monkeypatch.setenv("BRINELITE_REGISTRY", server.url(""))
        for source in ("lab/cells", "lab/cells@1.0.0"):
            result = cli("install", source, "-q")
            assert result.code == 0 and "already installed" in result.out, result.err
        assert (
            "BRINELITE_OFFLINE is set: using the installed lab/cells@1.0.0"
            in cli("install", "lab/cells").out
        )
        for source in (server.url("/cells.tar.gz"), "lab/other", "lab/cells@2.0.0"):
            result = cli("install", source, "-q")
            one_line_error(result)
            assert "BRINELITE_OFFLINE" in result.err
        assert site.log == []  # not one request
    assert len(brinelite.load_dataset("lab/cells")) == ROWS


def test_pin_is_checked_against_the_installed_copy(cli):
    installed = cli("install", "demo/membrane", "-q")
    assert installed.code == 0
    actual = next(line.split()[1] for line in installed.out.splitlines() if "sha256" in line)
    result = cli("install", "demo/membrane", "--sha256", "0" * 64)
    one_line_error(result)
    assert actual in result.err and "0" * 64 in result.err
    assert cli("install", "demo/membrane", "--sha256", actual.upper()).code == 0


# --- issue 12: lock files ------------------------------------------------------------------


def test_lock_then_install_r_installs_exactly_the_locked_datasets(
    team_registry, cli, tmp_path, monkeypatch, brinelite_home
):
    monkeypatch.setenv("BRINELITE_REGISTRY", str(team_registry))
    assert cli("install", "lab/cells", "-q").code == 0
    assert cli("install", "demo/membrane", "-q").code == 0
    lock = tmp_path / "brinelite.lock"
    written = cli("lock", "lab/cells", "demo/membrane", "--out", lock)
    assert written.code == 0 and "Locked 2 datasets" in written.out
    entries = json.loads(lock.read_text())["datasets"]
    assert [(e["name"], e["version"]) for e in entries] == [
        ("demo/membrane", "1.0.0"),
        ("lab/cells", "1.0.0"),
    ]
    fingerprints = {e["name"]: e["fingerprint"] for e in entries}
    for name in ("lab/cells", "demo/membrane"):
        assert cli("uninstall", name).code == 0
    result = cli("install", "-r", lock, "-q")
    assert result.code == 0, result.err
    assert result.out.count("was installed") == 2
    for name, fingerprint in fingerprints.items():
        assert brinelite.load_dataset(name).manifest.fingerprint == fingerprint
    assert cli("install", "-r", lock, "-q").out.count("already installed") == 2


GOOD = {"name": "lab/cells", "version": "1.0.0", "sha256": "a" * 64, "fingerprint": "b" * 64}


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        json.dumps({"lock_version": 2, "datasets": [GOOD]}),
        json.dumps({"lock_version": True, "datasets": [GOOD]}),
        json.dumps({"lock_version": 1, "datasets": [GOOD], "extra": 1}),
        json.dumps({"lock_version": 1, "datasets": {"lab/cells": GOOD}}),
        json.dumps({"lock_version": 1, "datasets": [GOOD, GOOD]}),
        json.dumps({"lock_version": 1, "datasets": [GOOD] * 1001}),
        '{"lock_version": 1, "lock_version": 1, "datasets": []}',
        *[
            json.dumps({"lock_version": 1, "datasets": [{**GOOD, key: value}]})
            for key, value in [
                ("name", "../etc"),
                ("name", "lab/cells@1.0.0"),
                ("name", "x" * 10_000),
                ("version", "1"),
                ("version", 1),
                ("sha256", "A" * 64),
                ("sha256", "a" * 63),
                ("fingerprint", None),
                ("size", 5),
            ]
        ],
        " " * (1024**2 + 1),
    ],
)
def test_malformed_lock_file_is_one_line_and_installs_nothing(text, cli, tmp_path, brinelite_home):
    lock = tmp_path / "brinelite.lock"
    lock.write_text(text)
    result = cli("install", "-r", lock, "-q")
    one_line_error(result)
    assert "Lock file" in result.err and len(result.err) < 400
    assert cache.installed() == [] and not (brinelite_home / "datasets").exists()


def test_lock_pins_are_verified_archive_and_fingerprint(team_registry, cli, tmp_path, monkeypatch):
    monkeypatch.setenv("BRINELITE_REGISTRY", str(team_registry))
    sha = json.loads((team_registry / "lab/cells/index.json").read_text())["versions"]["1.0.0"]
    lock = tmp_path / "brinelite.lock"
    for pins, words in [
        ({"sha256": "c" * 64}, "expected " + "c" * 64),
        ({"sha256": sha["sha256"], "fingerprint": "d" * 64}, "expected " + "d" * 64),
    ]:
        entry = {**GOOD, "sha256": sha["sha256"], **pins}
        lock.write_text(json.dumps({"lock_version": 1, "datasets": [entry]}))
        result = cli("install", "-r", lock, "-q")
        one_line_error(result)
        assert words in result.err
        assert cache.installed() == []
    assert os.listdir(cache.downloads_dir()) == []
