"""The cache folder: `cache clean` deletes only what brinelite made, never through a link,
and says what it freed; `list` shows what each dataset takes on disk; areas are tagged."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from brinelite import cache

DEAD = 999_999_999  # above any pid_max: a process that cannot be running
KEY = "0123456789abcdef"


def write(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    return path


def user_files(home: Path) -> list[Path]:
    """What a user kept in the folder before pointing BRINELITE_HOME at it."""
    return [
        write(home / "tmp" / "notes.txt", 10),
        write(home / "tmp" / f"backup-{DEAD}-old" / "keep.txt", 10),
        write(home / "downloads" / "report.pdf", 10),
        write(home / "prepared" / "photos" / "holiday.jpg", 10),
    ]


def test_clean_removes_only_what_brinelite_made(cli, brinelite_home):
    mine = [
        write(brinelite_home / "tmp" / f"install-{DEAD}-abc_12" / "images" / "0.png", 5000),
        write(brinelite_home / "downloads" / f"{KEY}-cells.tar.gz.part", 3000),
        write(brinelite_home / "prepared" / ("ab" * 32) / "x.npy", 7000),  # no key.json: stale
    ]
    theirs = user_files(brinelite_home)
    result = cli("cache", "clean")
    assert result.code == 0, result.err
    assert all(path.is_file() for path in theirs)  # before: all four deleted
    assert not any(path.exists() for path in mine)
    lines = result.out.splitlines()
    assert lines[0] == "Freed 15.0 KB in 3 entries (1 stale prepared cache)."
    assert sorted(line.split() for line in lines[1:4]) == [
        ["3.0", "KB", f"downloads/{KEY}-cells.tar.gz.part"],
        ["5.0", "KB", f"tmp/install-{DEAD}-abc_12"],
        ["7.0", "KB", f"prepared/{'ab' * 32}"],
    ]
    assert lines[-1] == (
        "Left 4 not created by brinelite (or links): downloads/report.pdf, prepared/photos, "
        f"tmp/backup-{DEAD}-old, tmp/notes.txt."
    )


def test_clean_removes_an_abandoned_prepared_filling_and_skips_one_in_use(cli, brinelite_home):
    """Before: every ``tmp/prepared-<64 hex>`` filling was "not created by brinelite", kept."""
    idle = time.time() - 2 * cache.FILLING_IDLE
    folders = {}
    for digit, name, when in (("a", "abandoned", idle), ("b", "locked", idle), ("c", "new", 0)):
        folders[name] = brinelite_home / "tmp" / f"prepared-{digit * 64}"
        row = write(folders[name] / "0.npz", 4000)
        for path in (row, folders[name]) if when else ():
            os.utime(path, (when, when))
    with cache.lock(folders["locked"].name):  # a run adding a row holds it
        result = cli("cache", "clean")
    assert result.code == 0, result.err
    assert not folders["abandoned"].exists()
    assert folders["locked"].is_dir() and folders["new"].is_dir()
    lines = result.out.splitlines()
    assert lines[0] == "Freed 4.0 KB in 1 entry."
    assert f"tmp/{folders['abandoned'].name}" in lines[1]
    assert "not created" not in result.out
    # Each skipped entry with its own reason. Before: both "in use by a running install",
    # though the new filling's lock is free and no install runs.
    assert lines[-3:] == [
        "Skipped 2 entries:",
        f"  tmp/{folders['locked'].name}  ({cache.SKIP_FILLING_LOCKED})",
        f"  tmp/{folders['new'].name}  ({cache.SKIP_FILLING_RECENT})",
    ]
    assert "being filled" in lines[-2] and "in the last 60 minutes" in lines[-1]


def test_clean_never_deletes_through_a_link(cli, brinelite_home, tmp_path):
    scratch = tmp_path / "scratch"
    precious = [write(scratch / ("cd" * 32) / "x.npy", 100), write(scratch / "photo.jpg", 100)]
    outside = write(tmp_path / "outside" / "data.bin", 100)
    (brinelite_home / "prepared").symlink_to(scratch, target_is_directory=True)
    (brinelite_home / "downloads").mkdir()
    (brinelite_home / "downloads" / f"{KEY}-x.tar.gz").symlink_to(outside)
    (brinelite_home / "tmp").mkdir()
    (brinelite_home / "tmp" / f"install-{DEAD}-a").symlink_to(outside.parent)
    result = cli("cache", "clean")
    assert result.code == 0, result.err
    assert all(path.is_file() for path in [*precious, outside])  # before: scratch/ emptied
    assert (brinelite_home / "downloads" / f"{KEY}-x.tar.gz").is_symlink()
    assert result.out.splitlines()[0] == "Freed 0 B in 0 entries."
    assert "prepared" in result.out.splitlines()[-1]


def test_an_install_leaves_other_folders_in_tmp_alone(cli, brinelite_home, pairs_src):
    theirs = user_files(brinelite_home)
    assert cli("install", pairs_src, "--name", "gen/discs", "-q").code == 0
    assert all(path.is_file() for path in theirs)  # before: tmp/backup-<pid>-old was deleted


def test_a_cache_folder_brinelite_creates_carries_a_cachedir_tag(
    cli, tmp_path, pairs_src, monkeypatch
):
    home = tmp_path / "new" / "cache"
    monkeypatch.setenv("BRINELITE_HOME", str(home))
    assert cli("install", pairs_src, "--name", "gen/discs", "-q").code == 0
    tag = (home / "CACHEDIR.TAG").read_text()
    assert tag.startswith("Signature: 8a477f597d28d172789f06886806bc55")
    assert cli("cache", "clean").out.splitlines() == ["Freed 0 B in 0 entries."]
    assert (home / "CACHEDIR.TAG").is_file()


def test_list_shows_what_each_dataset_takes_on_disk(cli, pairs_src):
    assert cli("install", pairs_src, "--name", "gen/discs", "-q").code == 0
    folder = cache.dataset_path(cache.installed()[0])
    size = sum(os.lstat(path).st_size for path in folder.rglob("*") if path.is_file())
    name, amount, unit = cli("list").out.split()
    assert name == "gen/discs@1.0.0" and f"{amount} {unit}" == f"{size / 1000:.1f} KB"
    listed = json.loads(cli("list", "--json").out)["datasets"]
    assert listed[0]["bytes"] == size
