"""The brinelite CLI verbs a user runs around install: list, show, uninstall, cache."""

from __future__ import annotations

import subprocess
import sys

import cv2

import brinelite


def test_list_show_uninstall(pairs_src, tmp_path, cli, brinelite_home):
    assert "No datasets installed" in cli("list").out
    assert cli("install", pairs_src, "--name", "gen/discs@1.0.0").code == 0
    assert cli("install", pairs_src, "--name", "gen/discs@1.1.0").code == 0
    assert cli("list").out.split() == ["gen/discs@1.0.0", "gen/discs@1.1.0"]

    sheet = tmp_path / "sheet.png"
    shown = cli("show", "gen/discs", "--out", sheet, "--rows", "6")
    assert shown.code == 0 and str(sheet) in shown.out
    grid = cv2.imread(str(sheet))
    assert grid.shape == (2 * 224, 4 * 224, 3)
    # The overlay tints mask pixels red: the disc of row 0 must show more red than green.
    first = grid[:224, :224].astype(int)
    assert (first[:, :, 2] - first[:, :, 1] > 60).sum() > 100

    assert cli("uninstall", "gen/discs@1.0.0").code == 0
    assert brinelite.list_datasets() == ["gen/discs@1.1.0"]
    assert cli("uninstall", "gen/discs").code == 0
    assert brinelite.list_datasets() == []
    assert not (brinelite_home / "datasets" / "gen").exists()


def test_cache_dir_follows_brinelite_home(cli, brinelite_home):
    assert cli("cache", "dir").out.strip() == str(brinelite_home)
    (brinelite_home / "downloads").mkdir()
    (brinelite_home / "downloads" / "x.part").write_bytes(b"1234")
    assert "Freed 4 B" in cli("cache", "clean").out
    assert not (brinelite_home / "downloads" / "x.part").exists()


def test_console_script_runs_as_a_process(pairs_src, brinelite_home):
    version = subprocess.run(
        [sys.executable, "-m", "brinelite", "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.startswith("brinelite ")
    bad = subprocess.run(
        [sys.executable, "-m", "brinelite", "install", "no/such-dataset"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and bad.stderr.startswith("Error: ") and bad.stderr.count("\n") == 1
