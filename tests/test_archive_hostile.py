"""Reliability (issue 7): hostile and broken inputs, end to end through ``brinelite.install``.

Every case is rejected with a clear :class:`BrineliteError`, writes nothing outside the
staging folder, and leaves ``$BRINELITE_HOME/datasets`` byte for byte as it was. The unit
tests of the extractor itself are in tests/test_archive.py; here the whole install runs.
"""

from __future__ import annotations

import gzip
import io
import stat
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import make_pairs, write_zip, zip_entry
from reliability_helpers import Serving, Site, snapshot, staging_left

import brinelite
from brinelite import archive, publishing
from brinelite.errors import (
    ArchiveError,
    BuildError,
    DataError,
    DatasetNotFoundError,
    IntegrityError,
    InvalidNameError,
    ManifestError,
)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A cache inside tmp_path, so '..' targets land in tmp_path where they can be checked."""
    path = tmp_path / "home"
    monkeypatch.setenv("BRINELITE_HOME", str(path))
    return path


@pytest.fixture
def populated(home, pairs_src) -> dict[str, str]:
    """A cache that already holds one dataset; returns its snapshot."""
    brinelite.install(str(pairs_src), name="keep/me@1.0.0", quiet=True)
    before = snapshot(home)
    assert before
    return before


def assert_untouched(home: Path, before: dict[str, str], tmp_path: Path) -> None:
    assert snapshot(home) == before
    assert staging_left(home) == []
    assert not (tmp_path / "outside").exists()
    assert not [p for p in tmp_path.rglob("evil*") if p.suffix != ".lock"]
    assert not list(Path(home).rglob("*.part"))


# --- hostile archives -------------------------------------------------------------------

PNG = cv2.imencode(".png", np.zeros((4, 4), np.uint8))[1].tobytes()


def _tar(path: Path, entries: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w:gz", format=tarfile.GNU_FORMAT) as tar:
        for entry in entries:
            if isinstance(entry, tuple):
                info = tarfile.TarInfo(entry[0])
                info.size = len(entry[1])
                tar.addfile(info, io.BytesIO(entry[1]))
            else:
                tar.addfile(entry)
    return path


def _special(name: str, kind: bytes, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def _raw_zip_name(path: Path, raw: bytes) -> Path:
    """A zip whose one entry name is ``raw`` bytes (invalid UTF-8), without the UTF-8 flag."""
    placeholder = b"x" * len(raw)
    write_zip(path, [(placeholder.decode(), PNG)])
    path.write_bytes(path.read_bytes().replace(placeholder, raw))
    return path


def _raw_tar_name(path: Path, raw: bytes) -> Path:
    """A .tar.gz whose one entry name is ``raw`` bytes (invalid UTF-8)."""
    with tarfile.open(path, "w:gz", encoding="utf-8", errors="surrogateescape") as tar:
        info = tarfile.TarInfo(raw.decode("utf-8", "surrogateescape"))
        info.size = len(PNG)
        tar.addfile(info, io.BytesIO(PNG))
    return path


def hostile(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Every hostile archive: name -> (archive, what the error must say)."""
    outside = tmp_path / "outside"
    up = "../../../../outside/evil.txt"  # from home/tmp/install-*/extracted to tmp_path/outside
    t, z = tmp_path / "t", tmp_path / "z"
    t.mkdir()
    z.mkdir()
    cases = {
        "tar-absolute": (_tar(t / "a.tgz", [(str(outside / "evil.txt"), b"x")]), "absolute path"),
        "tar-dotdot": (_tar(t / "b.tgz", [(up, b"x")]), "'..'"),
        "tar-dotdot-inner": (_tar(t / "c.tgz", [("images/../../evil.png", PNG)]), "'..'"),
        "tar-symlink-out": (
            _tar(t / "d.tgz", [_special("images", tarfile.SYMTYPE, str(outside))]),
            "symbolic link",
        ),
        "tar-symlink-then-file": (
            _tar(
                t / "e.tgz",
                [_special("link", tarfile.SYMTYPE, "../../.."), ("link/evil.txt", b"x")],
            ),
            "symbolic link",
        ),
        "tar-hardlink-out": (
            _tar(t / "f.tgz", [_special("evil", tarfile.LNKTYPE, "/etc/passwd")]),
            "hard link",
        ),
        "tar-hardlink-dotdot": (
            _tar(t / "g.tgz", [_special("evil", tarfile.LNKTYPE, up)]),
            "hard link",
        ),
        "tar-chardev": (_tar(t / "h.tgz", [_special("evil", tarfile.CHRTYPE)]), "device file"),
        "tar-blockdev": (_tar(t / "i.tgz", [_special("evil", tarfile.BLKTYPE)]), "device file"),
        "tar-fifo": (_tar(t / "j.tgz", [_special("evil", tarfile.FIFOTYPE)]), "FIFO"),
        "tar-duplicate": (
            _tar(t / "k.tgz", [("images/0.png", PNG), ("images/0.png", PNG)]),
            "appears twice",
        ),
        "tar-duplicate-dot": (
            _tar(t / "l.tgz", [("images/0.png", PNG), ("./images//0.png", PNG)]),
            "appears twice",
        ),
        "tar-not-utf8": (_raw_tar_name(t / "m.tgz", b"images/\xff\xfe.png"), "not valid UTF-8"),
        "tar-windows-path": (_tar(t / "n.tgz", [("..\\evil.txt", b"x")]), "backslash"),
        "zip-absolute": (
            write_zip(z / "a.zip", [(str(outside / "evil.txt"), b"x")]),
            "absolute path",
        ),
        "zip-dotdot": (write_zip(z / "b.zip", [(up, b"x")]), "'..'"),
        "zip-symlink": (
            write_zip(z / "c.zip", [(zip_entry("images", stat.S_IFLNK | 0o777), b"/etc")]),
            "symbolic link",
        ),
        "zip-fifo": (
            write_zip(z / "d.zip", [(zip_entry("evil", stat.S_IFIFO | 0o644), b"")]),
            "FIFO",
        ),
        "zip-chardev": (
            write_zip(z / "e.zip", [(zip_entry("evil", stat.S_IFCHR | 0o644), b"")]),
            "device file",
        ),
        "zip-not-utf8": (_raw_zip_name(z / "g.zip", b"images/\xff\xfe.png"), "not valid UTF-8"),
    }
    with pytest.warns(UserWarning, match="Duplicate name"):
        cases["zip-duplicate"] = (
            write_zip(z / "f.zip", [("images/0.png", PNG), ("images/0.png", PNG)]),
            "appears twice",
        )
    return cases


HOSTILE = [
    "tar-absolute",
    "tar-dotdot",
    "tar-dotdot-inner",
    "tar-symlink-out",
    "tar-symlink-then-file",
    "tar-hardlink-out",
    "tar-hardlink-dotdot",
    "tar-chardev",
    "tar-blockdev",
    "tar-fifo",
    "tar-duplicate",
    "tar-duplicate-dot",
    "tar-not-utf8",
    "tar-windows-path",
    "zip-absolute",
    "zip-dotdot",
    "zip-symlink",
    "zip-fifo",
    "zip-chardev",
    "zip-duplicate",
    "zip-not-utf8",
]


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_archive_is_refused_and_cache_unchanged(case, home, populated, tmp_path):
    path, words = hostile(tmp_path)[case]
    with pytest.raises(ArchiveError, match="Refusing to extract") as caught:
        brinelite.install(str(path), name="evil/set@1.0.0", quiet=True)
    assert words in str(caught.value)
    assert "\n" not in str(caught.value)
    assert_untouched(home, populated, tmp_path)


def test_every_hostile_case_is_exercised(tmp_path):
    assert sorted(hostile(tmp_path)) == sorted(HOSTILE)


@pytest.mark.parametrize("case", ["tar-dotdot", "tar-symlink-out", "zip-absolute"])
def test_hostile_archive_from_a_url_is_refused(case, home, populated, tmp_path):
    path, words = hostile(tmp_path)[case]
    site = Site(files={"/set.tgz": path.read_bytes()})
    with Serving(site) as server, pytest.raises(ArchiveError, match=words):
        brinelite.install(server.url("/set.tgz"), name="evil/set@1.0.0", quiet=True)
    assert_untouched(home, populated, tmp_path)
    assert list((home / "downloads").iterdir()) == []  # the downloaded archive is deleted too


def test_cli_reports_a_hostile_archive_on_one_line(cli, home, populated, tmp_path):
    path, _ = hostile(tmp_path)["tar-dotdot"]
    result = cli("install", path, "--name", "evil/set")
    assert result.code == 1
    assert result.err.strip().startswith("Error: Refusing to extract")
    assert result.err.strip().count("\n") == 0 and "Traceback" not in result.err
    assert_untouched(home, populated, tmp_path)


# --- bombs, corrupt and truncated archives -----------------------------------------------

MIB = 1024**2


def _bomb(path: Path, size: int) -> Path:
    """A dataset-looking .tar.gz with one image of ``size`` zero bytes (about 1000:1)."""
    info = tarfile.TarInfo("images/000.png")
    info.size = size
    with tarfile.open(path, "w:gz") as tar:
        tar.addfile(info, io.BytesIO(bytes(size)))
    return path


def test_decompression_bomb_is_stopped_while_extracting(home, populated, tmp_path, monkeypatch):
    bomb = _bomb(tmp_path / "bomb.tar.gz", 96 * MIB)
    monkeypatch.setenv(archive.LIMIT_ENV, str(4 * MIB))
    peak = []
    real_file = archive._Writer.file

    def watched(self, name, data):  # record how much had been written when it stopped
        try:
            real_file(self, name, data)
        finally:
            peak.append(self.written)

    monkeypatch.setattr(archive._Writer, "file", watched)
    with pytest.raises(ArchiveError, match="expands past the limit of 4,194,304 bytes"):
        brinelite.install(str(bomb), name="evil/bomb", quiet=True)
    assert peak and max(peak) <= 4 * MIB  # never more than the limit on disk, not 96 MiB
    assert_untouched(home, populated, tmp_path)


@pytest.fixture
def good_archive(pairs_src, tmp_path) -> Path:
    return brinelite.build(pairs_src, "lab/cells", "1.0.0", tmp_path / "cells.tar.gz").archive


def _gzip_crc_error(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-8] ^= 0xFF  # the CRC32 of the gzip trailer
    path.write_bytes(bytes(data))


def _cut_tar(path: Path) -> None:
    raw = gzip.decompress(path.read_bytes())
    path.with_suffix("").write_bytes(raw[: len(raw) // 2])  # an uncompressed tar, cut
    path.unlink()
    path.with_suffix("").rename(path)


def _cut_gzip(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x55
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage", [_gzip_crc_error, _cut_tar, _cut_gzip, _flip_middle], ids=lambda f: f.__name__
)
def test_corrupt_or_truncated_archive_is_refused(damage, good_archive, home, populated, tmp_path):
    damage(good_archive)
    with pytest.raises((ArchiveError, IntegrityError)) as caught:
        brinelite.install(str(good_archive), quiet=True)
    message = str(caught.value)
    assert "corrupt or truncated" in message or "fails verification" in message
    assert_untouched(home, populated, tmp_path)


def _retar(folder: Path, out: Path) -> Path:
    archive.create(folder, out)
    return out


def _extracted(good_archive: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "unpacked"
    folder.mkdir()
    archive.extract(good_archive, folder)
    return folder


def test_manifest_listing_a_missing_file_is_refused(good_archive, home, populated, tmp_path):
    folder = _extracted(good_archive, tmp_path)
    (folder / "images" / "003.png").unlink()
    bad = _retar(folder, tmp_path / "missing.tar.gz")
    with pytest.raises(IntegrityError, match=r"missing: images/003.png"):
        brinelite.install(str(bad), quiet=True)
    assert_untouched(home, populated, tmp_path)


def test_file_whose_sha256_differs_from_the_manifest_is_refused(
    good_archive, home, populated, tmp_path
):
    folder = _extracted(good_archive, tmp_path)
    expected = brinelite.manifest.read(folder).files["masks/002.png"].sha256
    (folder / "masks" / "002.png").write_bytes(PNG)
    bad = _retar(folder, tmp_path / "altered.tar.gz")
    with pytest.raises(IntegrityError, match=r"altered: masks/002.png \(sha256 [0-9a-f]{64}") as c:
        brinelite.install(str(bad), quiet=True)
    assert f"expected {expected}" in str(c.value)
    assert_untouched(home, populated, tmp_path)


def test_archive_with_no_images_is_refused(home, populated, tmp_path):
    empty = _tar(tmp_path / "empty.tgz", [_special("images", tarfile.DIRTYPE), ("README", b"hi")])
    with pytest.raises(BuildError, match="needs an images/ and a masks/ folder"):
        brinelite.install(str(empty), name="lab/empty", quiet=True)
    only_dirs = _tar(
        tmp_path / "dirs.tgz",
        [_special("images", tarfile.DIRTYPE), _special("masks", tarfile.DIRTYPE)],
    )
    with pytest.raises(BuildError, match="holds no image files"):
        brinelite.install(str(only_dirs), name="lab/empty", quiet=True)
    with pytest.raises(ManifestError, match="holds no manifest.json"):
        brinelite.install(str(empty), quiet=True)
    assert_untouched(home, populated, tmp_path)


def test_url_that_returns_html_is_refused(home, populated, tmp_path):
    site = Site(files={"/cells.tar.gz": b"unused"}, faults={"/cells.tar.gz": ["html"]})
    with Serving(site) as server, pytest.raises(ArchiveError, match="HTML page") as caught:
        brinelite.install(server.url("/cells.tar.gz"), quiet=True)
    assert "check the URL" in str(caught.value)
    assert_untouched(home, populated, tmp_path)


# --- names, unknown datasets ------------------------------------------------------------

BAD_NAMES = ["../x", "a/b/c", "", " ", "lab/my cells", "Lab/Cells", "lab/..", "/etc"]


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_bad_dataset_names_are_refused(bad, cli, home, populated, pairs_src, tmp_path):
    result = cli("install", pairs_src, "--name", bad)
    assert result.code == 1
    assert result.err.startswith("Error: ") and result.err.strip().count("\n") == 0
    # an empty --name is no name: the error asks for one
    assert ("is not valid" if bad else "--name scope/name") in result.err
    with pytest.raises(InvalidNameError):
        brinelite.load_dataset(bad)
    assert_untouched(home, populated, tmp_path)


def test_unknown_dataset_and_version_suggest_close_names(
    good_archive, home, populated, tmp_path, monkeypatch, cli
):
    reg = tmp_path / "registry"
    publishing.publish(good_archive, str(reg))
    monkeypatch.setenv("BRINELITE_REGISTRY", str(reg))
    with pytest.raises(DatasetNotFoundError, match=r"Did you mean lab/cells\?"):
        brinelite.install("lab/cels", quiet=True)
    with pytest.raises(
        DatasetNotFoundError,
        match=r"lab/cells@9\.9\.9 was not found.*published versions of lab/cells: 1\.0\.0\.",
    ):
        brinelite.install("lab/cells@9.9.9", quiet=True)
    result = cli("info", "lab/cell")
    assert result.code == 1 and "not installed" in result.err
    assert_untouched(home, populated, tmp_path)
    assert brinelite.install("lab/cells", quiet=True).ref.full_name == "lab/cells"


# --- images in a dataset ----------------------------------------------------------------


def _corrupt_tree(tmp_path: Path) -> Path:
    src = make_pairs(tmp_path / "broken", count=6)
    png = (src / "images" / "000.png").read_bytes()
    (src / "images" / "001.png").write_bytes(png[: len(png) // 2])  # truncated PNG
    (src / "images" / "002.png").write_bytes(b"")  # zero bytes
    (src / "masks" / "003.png").write_text("not an image\n")  # wrong extension / content
    (src / "masks" / "004.png").unlink()  # image without mask
    cv2.imwrite(str(src / "masks" / "005.png"), np.zeros((10, 10), np.uint8))  # other size
    return src


def test_corrupt_images_are_all_named_at_install(home, populated, tmp_path):
    src = _corrupt_tree(tmp_path)
    with pytest.raises(BuildError) as caught:
        brinelite.install(str(src), name="lab/broken", quiet=True)
    assert "image without mask: images/004.png" in str(caught.value)
    (src / "images" / "004.png").unlink()
    with pytest.raises(BuildError) as caught:
        brinelite.install(str(src), name="lab/broken", quiet=True)
    message = str(caught.value)
    for fragment in ("images/001.png", "images/002.png", "masks/003.png", "size mismatch"):
        assert fragment in message
    assert "images/005.png 64x48, masks/005.png 10x10" in message  # width x height
    assert_untouched(home, populated, tmp_path)


def test_corrupt_image_at_load_time_names_row_and_file(home, populated):
    dataset = brinelite.load_dataset("keep/me")
    (dataset.path / "images" / "003.png").write_bytes(b"")  # damaged after install
    batches = dataset.to_keras("image", "mask", batch_size=1, shuffle=False)
    with pytest.raises(DataError) as caught:
        batches[3]
    assert "row 3" in str(caught.value) and "images/003.png" in str(caught.value)
    assert batches[2][0].shape == (1, 48, 64, 3)  # the other rows still load


def test_processing_function_errors_name_row_and_file(home, populated):
    dataset = brinelite.load_dataset("keep/me")

    def wrong_shapes(sample):
        x, y = sample
        return (x[:10] if x[0, 0, 0] == dataset.load_image("images/004.png")[0, 0, 0] else x), y

    batches = dataset.to_keras(
        "image", "mask", batch_size=8, shuffle=False, processing_function=wrong_shapes
    )
    with pytest.raises(DataError, match="different x shapes") as caught:
        batches[0]
    assert "row 4 (images/004.png, masks/004.png)" in str(caught.value)

    def raises(sample):
        raise RuntimeError("bad augmentation")

    broken = dataset.to_keras(
        "image", "mask", batch_size=2, shuffle=False, processing_function=raises
    )
    with pytest.raises(DataError, match=r"row 2 \(images/002.png, masks/002.png\).*bad augm"):
        broken[1]
