"""Reliability (issue 7): kill -9 at random moments, and installers running side by side.

Real ``python -m brinelite install`` processes download a 5.5 MB dataset archive from a
throttled HTTP server on 127.0.0.1. The invariants: a reader never sees half a dataset, a
killed install leaves nothing the next install trips over, and eight installers of the same
dataset download it once and all succeed.
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import HANG_GUARD
from reliability_helpers import (
    Serving,
    Site,
    smooth_pairs,
    snapshot,
    staging_left,
    subprocess_env,
)

import brinelite
from brinelite import manifest, publishing
from brinelite.errors import NotInstalledError

pytestmark = pytest.mark.slow

NAME = "crash/cells"
ROWS = 40
KILL_RUNS = 20
INSTALLERS = 8
SEED = 20260707


@pytest.fixture(scope="module")
def big_archive(tmp_path_factory) -> Path:
    """A real dataset archive of about 5.5 MB (40 blurred-noise 256x256 RGB pairs)."""
    tmp = tmp_path_factory.mktemp("big")
    src = smooth_pairs(tmp / "src", ROWS, seed=1)
    return brinelite.build(src, NAME, "1.0.0", tmp / "cells-1.0.0.tar.gz").archive


def start_install(home: Path, source: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "brinelite", "install", source, "--quiet"],
        env=subprocess_env(home, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def assert_whole_or_absent(home: Path, monkeypatch) -> bool:
    """What a reader sees: not installed, or a dataset that verifies. True if installed."""
    monkeypatch.setenv("BRINELITE_HOME", str(home))
    try:
        dataset = brinelite.load_dataset(NAME)
    except NotInstalledError:
        assert [k for k in snapshot(home) if not k.endswith("/")] == []
        return False
    manifest.verify(dataset.path, dataset.manifest)
    assert len(dataset) == ROWS
    return True


def test_kill_9_at_random_moments_never_leaves_half_a_dataset(
    big_archive, tmp_path, monkeypatch, cli
):
    data = big_archive.read_bytes()
    site = Site(files={"/cells.tar.gz": data}, chunk=64 * 1024, delay=0.012)
    rng = random.Random(SEED)
    outcomes = {"not installed": 0, "installed": 0, "part left": 0, "staging left": 0}
    resumed = 0
    with Serving(site) as server:
        url = server.url("/cells.tar.gz")
        started = time.monotonic()
        reference = start_install(tmp_path / "reference", url)
        assert reference.wait(HANG_GUARD) == 0, reference.stderr.read()
        span = time.monotonic() - started  # how long a whole install takes, startup included
        assert 1.0 < span < 30
        for run in range(KILL_RUNS):
            home = tmp_path / f"run{run}"
            site.delay = 0.012
            process = start_install(home, url)
            time.sleep(rng.uniform(0, span))
            process.kill()  # SIGKILL: no cleanup of any kind runs
            process.wait(HANG_GUARD)
            installed = assert_whole_or_absent(home, monkeypatch)
            outcomes["installed" if installed else "not installed"] += 1
            outcomes["part left"] += any(p.stat().st_size for p in home.glob("downloads/*.part"))
            outcomes["staging left"] += bool(staging_left(home))
            # the next install succeeds (resuming a part, removing abandoned staging)
            site.delay = 0.0
            before = len(site.log)
            result = brinelite.install(url, quiet=True)
            assert result.already == installed
            resumed += any("Range" in r.headers for r in site.log[before:])
            assert cli("verify", NAME).code == 0
            assert staging_left(home) == []
            assert list(home.glob("downloads/*")) == []
            assert assert_whole_or_absent(home, monkeypatch)
    print(f"\nkill -9 runs: {KILL_RUNS}, span {span:.2f} s, {outcomes}, resumed {resumed}")
    assert sum(outcomes[k] for k in ("installed", "not installed")) == KILL_RUNS
    assert outcomes["not installed"] >= 3 and outcomes["part left"] >= 1  # kills did land early
    assert resumed == outcomes["part left"]  # every part left behind was resumed, not refetched


def _publish(big_archive: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "registry"
    publishing.publish(big_archive, str(folder))
    return folder


@pytest.mark.parametrize("how", ["registry-name", "url"])
def test_eight_installers_download_once_and_all_succeed(how, big_archive, tmp_path):
    folder = _publish(big_archive, tmp_path)
    site = Site(root=folder, chunk=64 * 1024, delay=0.004)
    archive_path = "/crash/cells/cells-1.0.0.tar.gz"
    home = tmp_path / "home"
    with Serving(site) as server:
        base = server.url("")
        source = NAME if how == "registry-name" else server.url(archive_path)
        processes = [
            start_install(home, source, BRINELITE_REGISTRY=base) for _ in range(INSTALLERS)
        ]
        results = [(p.wait(HANG_GUARD), p.stdout.read(), p.stderr.read()) for p in processes]
    assert [code for code, _, _ in results] == [0] * INSTALLERS, [e for _, _, e in results]
    assert len(site.gets(archive_path)) == 1  # exactly one download
    outputs = [out for _, out, _ in results]
    assert sum("was installed" in out for out in outputs) == 1
    assert sum("already installed" in out for out in outputs) == INSTALLERS - 1
    hashes = {line for out in outputs for line in out.splitlines() if line.startswith("sha256")}
    assert len(hashes) <= 1  # every installer reports the same archive
    files = snapshot(home)
    dataset = brinelite.load_dataset(str(home / "datasets" / NAME / "1.0.0"))
    manifest.verify(dataset.path, dataset.manifest)
    assert len([k for k in files if k.endswith(".png")]) == 2 * ROWS
    assert staging_left(home) == []


def test_loading_one_dataset_while_another_installs(big_archive, pairs_src, brinelite_home):
    brinelite.install(str(pairs_src), name="lab/pairs", quiet=True)
    site = Site(files={"/cells.tar.gz": big_archive.read_bytes()}, chunk=64 * 1024, delay=0.01)
    loads, sightings, errors = 0, [], []
    with Serving(site) as server:
        process = start_install(brinelite_home, server.url("/cells.tar.gz"))

        def watch_the_new_one() -> None:  # a reader polling the dataset being installed
            while process.poll() is None:
                try:
                    sightings.append(len(brinelite.load_dataset(NAME)))
                except NotInstalledError:
                    sightings.append(0)
                except Exception as exc:  # anything else is a half dataset
                    errors.append(exc)

        watcher = threading.Thread(target=watch_the_new_one)
        watcher.start()
        while process.poll() is None:
            dataset = brinelite.load_dataset("lab/pairs")
            for row in dataset:
                assert dataset.load_image(row.image).shape == (48, 64, 3)
            loads += 1
        watcher.join()
    assert process.returncode == 0, process.stderr.read()
    assert errors == []
    assert loads > 5 and set(sightings) <= {0, ROWS} and 0 in sightings
    dataset = brinelite.load_dataset(NAME)
    manifest.verify(dataset.path, dataset.manifest)
    assert len(brinelite.load_dataset("lab/pairs")) == 8
