"""`brinelite install`: what a source means (a name, a URL, a path) and what a pin can check.

Names go to the registries even when a folder of that name sits in the current directory;
a pin that cannot be checked (a folder has no archive) is refused; installing again what is
installed says so and exits 0; malformed URLs and over-long names are one line.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from pathlib import Path

import pytest
from conftest import HANG_GUARD, camvid_subset
from reliability_helpers import Serving, Site, snapshot
from test_registry import build

import brinelite
from brinelite import publishing


def one_line_error(result, code: int = 1) -> None:
    assert result.code == code, result.out
    assert result.err.startswith("Error: ") and result.err.count("\n") == 1, result.err
    assert "Traceback" not in result.err


def dataset_folder(tmp_path: Path, dest: Path, seed: int) -> Path:
    """A dataset folder (manifest + files) of lab/cells@1.0.0 at ``dest``."""
    archive = build(tmp_path / f"build-{seed}", "lab/cells", "1.0.0", seed=seed)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return dest


@pytest.fixture
def registry(tmp_path, monkeypatch) -> Path:
    """A folder registry holding lab/cells@1.0.0, asked first."""
    (tmp_path / "build-0").mkdir()
    root = tmp_path / "registry"
    publishing.publish(build(tmp_path / "build-0", "lab/cells", "1.0.0"), str(root))
    monkeypatch.setenv("BRINELITE_REGISTRY", str(root))
    return root


def registry_sha256(root: Path) -> str:
    index = json.loads((root / "lab" / "cells" / "index.json").read_text())
    return index["versions"]["1.0.0"]["sha256"]


# --- issue 26.4: a name is a name, not a folder ---------------------------------------------


def test_a_name_installs_from_the_registry_even_beside_a_folder_of_that_name(
    registry, tmp_path, cli, monkeypatch
):
    work = tmp_path / "project"
    (work / "lab").mkdir(parents=True)
    (tmp_path / "build-7").mkdir()
    dataset_folder(tmp_path, work / "lab" / "cells@1.0.0", seed=7)  # other images, same name
    monkeypatch.chdir(work)
    result = cli("install", "lab/cells@1.0.0", "-q")
    assert result.code == 0, result.err
    expected = registry_sha256(registry)
    assert f"sha256 {expected}" in result.out  # before: the folder was installed, no sha256
    record = json.loads((brinelite.load_dataset("lab/cells").path / "install.json").read_text())
    assert record["sha256"] == expected and record["registry"] == str(registry)


def test_a_name_found_nowhere_says_how_to_install_the_folder_of_that_name(
    tmp_path, cli, monkeypatch, brinelite_home
):
    work = tmp_path / "project"
    (work / "lab").mkdir(parents=True)
    (tmp_path / "build-7").mkdir()
    dataset_folder(tmp_path, work / "lab" / "cells@1.0.0", seed=7)
    monkeypatch.chdir(work)
    result = cli("install", "lab/cells@1.0.0", "-q")
    one_line_error(result)
    assert "write ./lab/cells@1.0.0" in result.err
    assert snapshot(brinelite_home) == {}
    installed = cli("install", "./lab/cells@1.0.0", "-q")
    assert installed.code == 0, installed.err
    assert brinelite.list_datasets() == ["lab/cells@1.0.0"]


def test_a_lock_file_never_installs_a_folder_of_the_locked_name(
    tmp_path, cli, monkeypatch, brinelite_home
):
    work = tmp_path / "project"
    (work / "lab").mkdir(parents=True)
    (tmp_path / "build-7").mkdir()
    folder = dataset_folder(tmp_path, work / "lab" / "cells@1.0.0", seed=7)
    lock = work / "brinelite.lock"
    entry = {"name": "lab/cells", "version": "1.0.0", "sha256": "0" * 64}
    entry["fingerprint"] = brinelite.load_dataset(str(folder)).manifest.fingerprint
    lock.write_text(json.dumps({"lock_version": 1, "datasets": [entry]}))
    monkeypatch.chdir(work)
    result = cli("install", "-r", lock, "-q")
    one_line_error(result)  # before: installed the folder, recording sha256 ''
    assert snapshot(brinelite_home) == {}


def test_a_sha256_pin_on_a_folder_is_refused_in_one_line(tmp_path, cli, brinelite_home):
    (tmp_path / "build-7").mkdir()
    folder = dataset_folder(tmp_path, tmp_path / "cells", seed=7)
    result = cli("install", folder, "--sha256", "0" * 64, "-q")
    one_line_error(result)  # before: installed, the pin ignored
    assert "folder" in result.err and snapshot(brinelite_home) == {}


def test_a_folder_install_prints_its_fingerprint(tmp_path, cli):
    (tmp_path / "build-7").mkdir()
    folder = dataset_folder(tmp_path, tmp_path / "cells", seed=7)
    for _ in range(2):  # installed, then already installed
        result = cli("install", folder, "-q")
        assert result.code == 0, result.err
        fingerprint = brinelite.load_dataset("lab/cells").manifest.fingerprint
        assert f"fingerprint {fingerprint}" in result.out  # before: no hash at all


def test_an_unpinned_name_installed_from_an_archive_is_already_installed(
    registry, tmp_path, cli, monkeypatch
):
    (tmp_path / "build-9").mkdir()
    archive = build(tmp_path / "build-9", "lab/tissue", "1.0.0", seed=9)
    assert cli("install", archive, "-q").code == 0
    site = Site(files={})  # a reachable registry that does not hold lab/tissue (404s)
    with Serving(site) as server:
        monkeypatch.setenv("BRINELITE_REGISTRY", f"{server.url('')},{registry}")
        for _ in range(2):  # a setup script run twice
            result = cli("install", "lab/tissue", "-q")
            assert result.code == 0, result.err  # before: "not found in the registries asked"
            assert "already installed" in result.out
            assert "lab/tissue is not in the registries asked" in result.out
        assert site.gets("/lab/tissue/index.json")
    one_line_error(cli("install", "lab/other", "-q"))


# --- issue 26.11: malformed URLs and over-long names ----------------------------------------


def test_a_plain_tree_of_label_maps_installs_only_as_binary_when_asked(tmp_path, cli):
    """Before: the refusal told install users to pass --binary, which install did not have."""
    tree = camvid_subset(tmp_path / "camvid", train=2, val=1, classes=False)
    refused = cli("install", tree, "--name", "lab/camvid")
    one_line_error(refused)
    assert "classes.json" in refused.err and "--binary" in refused.err
    assert brinelite.list_datasets() == []
    installed = cli("install", tree, "--name", "lab/camvid", "--binary")
    assert installed.code == 0, installed.err
    dataset = brinelite.load_dataset("lab/camvid")
    assert len(dataset) == 3 and dataset.manifest.classes is None


@pytest.mark.parametrize(
    "url", ["http://[::1", "http://[::1/x.tar.gz", "https://host:port/x.tar.gz", "http:///x.tar.gz"]
)
def test_a_malformed_url_is_one_line(url, cli, brinelite_home):
    result = cli("install", url, "-q")
    one_line_error(result)  # before: ValueError tracebacks
    assert "not a valid URL" in result.err
    assert not (brinelite_home / "datasets").exists()


def test_an_over_long_source_is_not_a_full_disk(cli):
    for source in ("a" * 300, "lab/" + "c" * 300, "./" + "d" * 300 + ".tar.gz"):
        result = cli("install", source, "-q")
        one_line_error(result)
        assert "space" not in result.err  # before: "Free some space"


def test_a_url_with_an_over_long_file_name_installs(tmp_path, cli):
    (tmp_path / "b").mkdir()
    data = build(tmp_path / "b", "lab/cells", "1.0.0").read_bytes()
    path = "/" + "x" * 300 + ".tar.gz"
    with Serving(Site(files={path: data})) as server:
        result = cli("install", server.url(path), "-q")
    assert result.code == 0, result.err  # before: "File name too long ... Free some space"
    assert f"sha256 {hashlib.sha256(data).hexdigest()}" in result.out


def test_a_full_disk_is_named_as_such(tmp_path, cli, monkeypatch):
    (tmp_path / "b").mkdir()
    archive = build(tmp_path / "b", "lab/cells", "1.0.0")

    def full(*args, **kwargs):
        raise OSError(28, os.strerror(28))

    monkeypatch.setattr(brinelite.cache, "commit", full)
    result = cli("install", archive, "-q")
    one_line_error(result)
    assert "No space left on device: free some space" in result.err


# --- issue 26.12: one URL installed under several names at once is downloaded once ----------


def test_concurrent_installs_of_one_url_under_other_names_download_it_once(tmp_path, httpserver):
    import subprocess
    import sys
    import threading
    import time

    from conftest import make_pairs
    from reliability_helpers import subprocess_env
    from werkzeug import Response

    plain = make_pairs(tmp_path / "plain", count=3, size=(24, 32))
    archive = tmp_path / "plain.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for sub in ("images", "masks"):
            tar.add(plain / sub, arcname=sub)
    data, home, names = archive.read_bytes(), tmp_path / "home", 4
    everyone_waits = threading.Event()

    def held(request):  # the body is sent once every installer has signed in for the URL
        everyone_waits.wait(HANG_GUARD)
        return Response(data, headers={"Content-Length": str(len(data))})

    httpserver.expect_request("/plain.tar.gz").respond_with_handler(held)
    url = httpserver.url_for("/plain.tar.gz")
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "brinelite", "install", url, "--name", f"lab/n{i}", "-q"],
            env=subprocess_env(home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(names)
    ]
    for _ in range(600):  # bounded: all four have started and signed in
        if len(list(home.glob("locks/download-*.users/*"))) == names:
            break
        time.sleep(0.05)
    everyone_waits.set()
    results = [(run.wait(HANG_GUARD), run.stderr.read()) for run in runs]
    assert [code for code, _ in results] == [0] * names, results
    gets = [entry for entry in httpserver.log if entry[0].path == "/plain.tar.gz"]
    assert len(gets) == 1  # before: one full download per name
    installed = sorted(p.parent.name for p in home.glob("datasets/lab/*/1.0.0"))
    assert installed == [f"n{i}" for i in range(names)]
    assert [p.name for p in (home / "downloads").iterdir()] == []  # the last one deleted it
