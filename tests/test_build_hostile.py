"""Reliability (issue 11.1, 11.3, 11.8, 11.11): what a dataset's own files can make brinelite do.

A hostile or careless teammate controls rows.csv, manifest.json and the image files. Rows must
never lead a read outside the dataset, an image header must not make the decoder allocate
gigabytes, and the same files must always be the same dataset. Each case goes through the
public API or the CLI, with real PNG files.
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import make_pairs
from reliability_helpers import snapshot, staging_left

import brinelite
from brinelite import archive
from brinelite.errors import BuildError, DataError, ManifestError
from brinelite.hashes import file_info
from brinelite.manifest import MANIFEST


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int, rows: int = 10) -> bytes:
    """A grey PNG whose header says ``width`` x ``height``; only ``rows`` rows of pixels follow."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\0" * (width + 1) * rows)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", pixels)
        + _chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def huge_png() -> bytes:
    """A real, complete 20000 x 20000 grey PNG (400 MB decoded, 389 KB on disk)."""
    side = 20000
    compressor = zlib.compressobj(9)
    row = b"\0" * (side + 1)
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", data)
        + _chunk(b"IEND", b"")
    )


def tampered(src: Path, tmp: Path, edit: Callable[[Path], None]) -> Path:
    """An archive of ``src`` built, edited by ``edit`` and given a manifest whose file table
    matches the edited files again (what a hostile producer ships)."""
    built = brinelite.build(src, "lab/cells", "1.0.0", tmp / "good.tar.gz").archive
    folder = tmp / "edited"
    folder.mkdir()
    archive.extract(built, folder)
    edit(folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"] = {
        path.relative_to(folder).as_posix(): vars(file_info(path))
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != MANIFEST
    }
    (folder / MANIFEST).write_text(json.dumps(manifest))
    out = tmp / "tampered.tar.gz"
    archive.create(folder, out)
    return out


def _rows(folder: Path, first_image: str) -> None:
    lines = (folder / "rows.csv").read_text().splitlines()
    lines[1] = f"{first_image},{lines[1].split(',')[1]}"
    (folder / "rows.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture
def secret(tmp_path) -> Path:
    """A real PNG outside every dataset (what a hostile row wants read)."""
    path = tmp_path / "outside" / "secret.png"
    path.parent.mkdir()
    path.write_bytes((make_pairs(tmp_path / "other", count=1) / "images" / "000.png").read_bytes())
    return path


def one_line(result) -> bool:
    return (
        result.code == 1
        and len(result.err.strip().splitlines()) == 1
        and "Traceback" not in result.err
    )


# --- 11.1: rows that point outside the dataset ------------------------------------------------


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda f, s: _rows(f, "../../../../../../.." + str(s)), "not safe relative paths"),
        (lambda f, s: _rows(f, str(s)), "not safe relative paths"),
        (lambda f, s: _rows(f, "images/not-there.png"), "images/not-there.png"),
        (lambda f, s: (f / "rows.csv").write_text("picture,mask\n"), "has columns"),
    ],
    ids=["dotdot", "absolute", "unlisted", "header"],
)
def test_install_refuses_rows_outside_the_file_table(pairs_src, tmp_path, secret, edit, words):
    """Before: all four installed (and the first two read the secret file)."""
    bad = tampered(pairs_src, tmp_path, lambda folder: edit(folder, secret))
    home = Path(brinelite.install(str(pairs_src), name="keep/me", quiet=True).path).parents[3]
    before = snapshot(home)
    with pytest.raises(ManifestError, match=words):
        brinelite.install(str(bad), quiet=True)
    assert snapshot(home) == before and staging_left(home) == []


def test_install_refuses_a_manifest_claiming_a_billion_rows(pairs_src, tmp_path):
    def claim(folder: Path) -> None:
        manifest = json.loads((folder / MANIFEST).read_text())
        (folder / MANIFEST).write_text(json.dumps(manifest | {"rows": 10**9}))

    with pytest.raises(ManifestError, match="1000000000 rows"):
        brinelite.install(str(tampered(pairs_src, tmp_path, claim)), quiet=True)
    assert brinelite.list_datasets() == []


def test_opening_a_folder_edited_by_hand_refuses_outside_rows(pairs_src, tmp_path, secret, cli):
    """Before: load_image and show read the secret file through the edited row."""
    installed = brinelite.install(str(pairs_src), name="keep/me", quiet=True).path
    _rows(installed, "../../../../../../../.." + str(secret))
    with pytest.raises(ManifestError, match="not safe relative paths"):
        brinelite.load_dataset("keep/me")
    assert one_line(cli("show", "keep/me", "--out", tmp_path / "grid.png"))


def test_a_symlink_out_of_the_dataset_is_not_followed(pairs_src, secret):
    """A file replaced by a link to outside: load_image refuses it (before: read the link)."""
    dataset = brinelite.load_dataset(str(brinelite.install(str(pairs_src), name="keep/me").path))
    target = dataset.path / dataset[0].image
    target.unlink()
    target.symlink_to(secret)
    with pytest.raises(brinelite.BrineliteError, match="leads outside"):
        dataset.load_image(dataset[0].image)


# --- 11.3: pixel bombs ------------------------------------------------------------------------


def _bomb_pair(src: Path, data: bytes) -> Path:
    (src / "images" / "000.png").write_bytes(data)
    (src / "masks" / "000.png").write_bytes(data)
    return src


def test_a_661_byte_png_claiming_60000_squared_is_refused_at_build_and_install(pairs_src, cli):
    """Before: cv2.error tracebacks at build and install."""
    bomb = png_claiming(60000, 60000)
    assert len(bomb) == 661
    _bomb_pair(pairs_src, bomb)
    for args in (("build", pairs_src, "--name", "x/y"), ("install", pairs_src, "--name", "x/y")):
        result = cli(*args)
        assert one_line(result), result.err
        assert "images/000.png is 60000x60000 = 3,600,000,000 pixels" in result.err
    assert brinelite.list_datasets() == []


def test_a_20000_squared_pair_is_refused_at_build_install_show_and_load(
    pairs_src, tmp_path, huge_png, cli
):
    """A valid 20000x20000 pair (778 KB on disk, 800 MB decoded): before, it built and
    installed, and show took 15.7 GB; now every entry point refuses it from the header."""
    assert len(huge_png) < 400_000
    bad = tampered(pairs_src, tmp_path, lambda folder: _bomb_pair(folder, huge_png))
    raw = _bomb_pair(make_pairs(tmp_path / "raw", count=2), huge_png)
    for args in (("build", raw, "--name", "x/y"), ("install", raw, "--name", "x/y")):
        result = cli(*args)
        assert one_line(result) and "20000x20000 = 400,000,000 pixels" in result.err
    assert brinelite.install(str(bad), quiet=True)  # an archive install decodes nothing
    result = cli("show", "lab/cells", "--out", tmp_path / "grid.png")
    assert one_line(result) and "20000x20000" in result.err
    assert not (tmp_path / "grid.png").exists()
    dataset = brinelite.load_dataset("lab/cells")
    with pytest.raises(DataError, match="more than the limit of 89,478,485"):
        dataset.load_image(dataset[0].image)
    with pytest.raises(DataError, match="more than the limit of 1,000"):
        dataset.load_image(dataset[1].image, max_pixels=1000)  # a 48x64 image, lower ceiling
    batches = dataset.to_keras("image", "mask", batch_size=1, shuffle=False)
    with pytest.raises(DataError, match="20000x20000"):
        batches[0]


def test_the_ceiling_follows_the_environment(pairs_src, monkeypatch):
    dataset = brinelite.load_dataset(str(brinelite.install(str(pairs_src), name="a/b").path))
    monkeypatch.setenv("BRINELITE_MAX_IMAGE_PIXELS", "3000")  # the images are 64 x 48 = 3072
    with pytest.raises(DataError, match="64x48 = 3,072 pixels"):
        dataset.load_image(dataset[0].image)
    monkeypatch.setenv("BRINELITE_MAX_IMAGE_PIXELS", "0")
    assert dataset.load_image(dataset[0].image).shape == (48, 64, 3)


def test_opencv_failures_are_one_line_errors_naming_the_file(tmp_path):
    """A header OpenCV itself refuses (over its own 2^30 limit) with the ceiling off."""
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming(60000, 60000))
    with pytest.raises(DataError, match=r"bomb.png cannot be decoded by OpenCV") as caught:
        brinelite.read_image(path, max_pixels=0)
    assert "\n" not in str(caught.value)


# --- 11.8: identity that depends on a clock ----------------------------------------------------


def test_two_builds_a_second_apart_are_byte_identical(pairs_src, tmp_path, cli):
    """Before: the manifest's `created` (the clock) made every build's sha256 differ."""
    first = cli("build", pairs_src, "--name", "lab/cells", "--out", tmp_path / "a.tar.gz")
    time.sleep(1.1)
    second = cli("build", pairs_src, "--name", "lab/cells", "--out", tmp_path / "b.tar.gz")
    assert first.code == second.code == 0
    digest = [line for line in first.out.splitlines() if line.startswith("sha256 ")]
    assert digest and digest[0] in second.out
    assert (tmp_path / "a.tar.gz").read_bytes() == (tmp_path / "b.tar.gz").read_bytes()


def test_the_same_plain_folder_installed_twice_is_already_installed(pairs_src, cli):
    """Before: "A different ceo/loc@1.0.0 is already installed" one second later."""
    assert cli("install", pairs_src, "--name", "ceo/loc").code == 0
    time.sleep(1.1)
    again = cli("install", pairs_src, "--name", "ceo/loc")
    assert again.code == 0 and "already installed" in again.out


def test_source_date_epoch_sets_created_and_fingerprints_ignore_it(
    pairs_src, tmp_path, monkeypatch
):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    early = brinelite.build(pairs_src, "lab/cells", "1.0.0", tmp_path / "a.tar.gz")
    assert early.manifest.created == "2023-11-14T22:13:20Z"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1800000000")
    late = brinelite.build(pairs_src, "lab/cells", "1.0.0", tmp_path / "b.tar.gz")
    assert late.sha256 != early.sha256  # the archives differ (their manifests' created) ...
    assert late.manifest.fingerprint == early.manifest.fingerprint  # ... the dataset does not


# --- 11.11: show on nothing ------------------------------------------------------------------


def test_show_of_a_dataset_without_rows_is_one_line(tmp_path, cli):
    """Before: IndexError traceback."""
    (tmp_path / "empty.csv").write_text("image,mask\n")
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "path": "empty.csv",
                "columns": [{"name": "image", "type": "image"}, {"name": "mask", "type": "image"}],
            }
        )
    )
    brinelite.build(config, "lab/empty", "1.0.0", tmp_path / "e.tar.gz")
    brinelite.install(str(tmp_path / "e.tar.gz"))
    result = cli("show", "lab/empty", "--out", tmp_path / "grid.png")
    assert one_line(result) and "no rows" in result.err


def test_show_to_an_unsupported_extension_is_one_line(pairs_src, tmp_path, cli):
    """`show --out x.txt`: before, a 30-line cv2.error traceback after drawing."""
    brinelite.install(str(pairs_src), name="lab/cells")
    result = cli("show", "lab/cells", "--out", tmp_path / "x.txt")
    assert one_line(result) and ".png" in result.err
    assert not (tmp_path / "x.txt").exists()


def test_build_into_a_missing_folder_is_one_line_before_any_work(pairs_src, tmp_path, cli):
    """`build --out nowhere/x.tar.gz`: before, a FileNotFoundError traceback after staging."""
    result = cli("build", pairs_src, "--name", "lab/cells", "--out", tmp_path / "no" / "x.tar.gz")
    assert one_line(result) and "does not exist" in result.err and "--out" in result.err
    assert not (tmp_path / "no").exists()


def test_build_refuses_unsafe_csv_paths(tmp_path, pairs_src, secret):
    (tmp_path / "data.csv").write_text(f"image,mask\n{secret},pairs/masks/000.png\n")
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "path": "data.csv",
                "columns": [{"name": "image", "type": "image"}, {"name": "mask", "type": "image"}],
            }
        )
    )
    with pytest.raises(BuildError, match="absolute path"):
        brinelite.build(config, "lab/x", "1.0.0", tmp_path / "x.tar.gz")
