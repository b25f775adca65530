"""Two teammates share a dataset: A publishes to a folder and serves it, B installs over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import HANG_GUARD, make_pairs

import brinelite


def tree(folder: Path) -> dict[str, bytes]:
    """Every file of an installed dataset but its install record, by relative path."""
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != "install.json"
    }


def publish_two_versions(cli, tmp_path: Path, dest: str) -> dict[str, dict[str, bytes]]:
    """Teammate A builds 1.0.0 and 1.1.0 of team/cells, publishes both, installs them locally."""
    files = {}
    for version, seed in (("1.0.0", 1), ("1.1.0", 2)):
        src = make_pairs(tmp_path / f"a-src-{version}", count=5, seed=seed)
        archive = tmp_path / f"cells-{version}.tar.gz"
        result = cli(
            "build", src, "--name", "team/cells", "--version", version, "--out", archive, "-q"
        )
        assert result.code == 0, result.err
        result = cli("publish", archive, "--registry", dest)
        assert result.code == 0, result.err
        assert f"Published team/cells@{version} to " in result.out
        assert f"brinelite install team/cells@{version}" in result.out
        assert cli("install", archive, "-q").code == 0
        files[version] = tree(brinelite.load_dataset("team/cells", version).path)
    return files


def teammate_b_installs(cli, monkeypatch, home: Path, registry_url: str, expected: dict) -> None:
    """B, with a cache of their own, installs newest then pinned and gets exactly A's files."""
    monkeypatch.setenv("BRINELITE_HOME", str(home))
    monkeypatch.setenv("BRINELITE_REGISTRY", registry_url)
    assert brinelite.list_datasets() == []

    newest = cli("install", "team/cells", "-q")
    assert newest.code == 0, newest.err
    assert "team/cells@1.1.0 was installed" in newest.out and "sha256 " in newest.out
    pinned = cli("install", "team/cells@1.0.0", "-q")
    assert pinned.code == 0, pinned.err
    assert "team/cells@1.0.0 was installed" in pinned.out

    for version in ("1.0.0", "1.1.0"):
        dataset = brinelite.load_dataset("team/cells", version)
        assert len(dataset) == 5
        assert tree(dataset.path) == expected[version]
        assert cli("info", f"team/cells@{version}").out.count(registry_url) == 1
    assert "team/cells  versions 1.0.0, 1.1.0  5 rows" in cli("search", "team").out


@pytest.fixture
def serving(tmp_path) -> Iterator[tuple[Path, str]]:
    """``brinelite serve`` on a fresh folder, as a real process; yields (folder, URL)."""
    folder = tmp_path / "registry"
    folder.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "brinelite", "serve", str(folder), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "NO_PROXY": "127.0.0.1"},
    )
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), url
        yield folder, url
    finally:
        proc.terminate()
        proc.wait(timeout=HANG_GUARD)


def test_publish_to_a_folder_serve_it_and_install_over_http(serving, tmp_path, cli, monkeypatch):
    folder, url = serving
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    expected = publish_two_versions(cli, tmp_path, str(folder))
    teammate_b_installs(cli, monkeypatch, tmp_path / "b-home", url, expected)
