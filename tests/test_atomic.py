"""brinelite.atomic: a file written for later reading appears whole or not at all."""

from __future__ import annotations

import pytest

import brinelite
from brinelite.atomic import atomic_path, atomic_write, write_text


def test_a_write_replaces_the_file_whole_and_leaves_nothing_beside_it(tmp_path):
    target = tmp_path / "record.json"
    target.write_text("old")
    assert write_text(target, '{"new": true}\n') == target
    assert target.read_text() == '{"new": true}\n'
    assert oct(target.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    target = tmp_path / "data.bin"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), atomic_write(target, "wb") as out:
        out.write(b"half")
        raise KeyboardInterrupt
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["data.bin"]


def test_a_name_near_the_file_system_limit_can_be_written(tmp_path):
    # before: the temporary name (".NAME.xxxxxxxx.tmp") was over 255 bytes: ENAMETOOLONG
    target = tmp_path / ("n" * 250)
    write_text(target, "fits")
    assert target.read_text() == "fits"


def test_only_whole_file_modes_are_accepted_and_the_helpers_are_public(tmp_path):
    with pytest.raises(ValueError, match="mode 'w' or 'wb'"), atomic_write(tmp_path / "x", "a"):
        pass
    assert {"atomic_write", "write_text"} <= set(brinelite.__all__)
    assert brinelite.write_text is write_text


def test_a_writer_that_takes_a_name_gets_a_hidden_temporary_beside_the_target(tmp_path):
    target = tmp_path / "model.keras"
    target.write_bytes(b"old")
    with atomic_path(target, suffix=".tmp.keras") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".model.keras.")
        assert tmp.name.endswith(".tmp.keras") and target.read_bytes() == b"old"
        tmp.write_bytes(b"new")  # as a writer given the name would
    assert target.read_bytes() == b"new"
    assert oct(target.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]


def test_a_writer_that_fails_by_name_leaves_the_target_and_no_temporary(tmp_path):
    target = tmp_path / "model.keras"
    target.write_bytes(b"old")
    with pytest.raises(OSError), atomic_path(target, suffix=".keras") as tmp:
        tmp.write_bytes(b"half")
        raise OSError("disk full")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]
    assert brinelite.atomic_path is atomic_path
