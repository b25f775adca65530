"""Tests for brinelite.archive: safe extraction of real (and hostile) archives, and create()."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path

import pytest
from conftest import Recorder, write_zip, zip_entry

from brinelite import archive
from brinelite.errors import ArchiveError
from brinelite.hashes import FileInfo, file_info

MIB = 1024**2


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A small dataset folder: nested files, an empty file, an empty folder, a >1 MiB file."""
    root = tmp_path / "source"
    (root / "images" / "sub").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "empty-folder").mkdir()
    (root / "images" / "a.png").write_bytes(b"\x89PNG fake image a")
    (root / "images" / "sub" / "b.png").write_bytes(os.urandom(2 * MIB + 123))
    (root / "masks" / "a.png").write_bytes(b"mask a")
    (root / "masks" / "empty.png").write_bytes(b"")
    (root / "manifest.json").write_text('{"name": "x/y"}')
    return root


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    """An empty extraction folder two levels below tmp_path, so '../' escapes stay visible."""
    folder = tmp_path / "work" / "dest"
    folder.mkdir(parents=True)
    return folder


def source_infos(root: Path) -> dict[str, FileInfo]:
    return {p.relative_to(root).as_posix(): file_info(p) for p in root.rglob("*") if p.is_file()}


def outside(tmp_path: Path, dest: Path) -> set[Path]:
    """Everything under tmp_path that is not inside dest."""
    return {p for p in tmp_path.rglob("*") if dest not in p.parents}


def write_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes]], **options) -> Path:
    with tarfile.open(path, "w:gz" if path.name.endswith("gz") else "w", **options) as tar:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def entry(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def extract_refused(path: Path, dest: Path, tmp_path: Path) -> str:
    """Extract a hostile archive: it must fail with ArchiveError and write nothing outside dest."""
    before = outside(tmp_path, dest)
    with pytest.raises(ArchiveError) as caught:
        archive.extract(path, dest)
    assert outside(tmp_path, dest) == before
    return str(caught.value)


# --- good archives ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["tar", "tar.gz", "zip"])
def test_round_trip_returns_sizes_and_sha256s(kind, source, dest, tmp_path):
    path = tmp_path / f"data.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for p in sorted(source.rglob("*")):
                zf.write(p, p.relative_to(source).as_posix())
    else:
        with tarfile.open(path, "w:gz" if kind == "tar.gz" else "w") as tar:
            tar.add(source, arcname=".")  # names like "./images/a.png", plus a "." entry

    infos = archive.extract(path, dest)

    expected = source_infos(source)
    assert infos == expected
    assert source_infos(dest) == expected
    assert (dest / "empty-folder").is_dir()
    assert stat.S_IMODE((dest / "masks" / "a.png").stat().st_mode) == 0o644
    assert stat.S_IMODE((dest / "images" / "sub").stat().st_mode) == 0o755


def test_kind_is_told_by_content_not_name(source, dest, tmp_path):
    misnamed = tmp_path / "really-a-tgz.zip"
    with tarfile.open(misnamed, "w:gz") as tar:
        tar.add(source / "manifest.json", arcname="manifest.json")
    assert archive.extract(misnamed, dest) == {"manifest.json": file_info(source / "manifest.json")}


def test_progress_counts_archive_bytes_read(source, dest, tmp_path):
    path = tmp_path / "data.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(source, arcname="data")
    progress = Recorder()
    archive.extract(path, dest, progress=progress)
    assert progress.total == path.stat().st_size
    assert progress.done == path.stat().st_size


def test_refuses_a_folder_that_is_not_empty(dest, tmp_path):
    path = write_tar(tmp_path / "a.tar", [(entry("a.txt"), b"a")])
    (dest / "already-here").write_text("x")
    with pytest.raises(ValueError, match="empty"):
        archive.extract(path, dest)


# --- hostile tar entries ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("info", "message"),
    [
        (entry("../escaped.txt"), "'..'"),
        (entry("images/../../../escaped.txt"), "'..'"),
        (entry("/tmp/absolute.txt"), "absolute path"),
        (entry("C:/windows.txt"), "drive letter"),
        (entry("..\\escaped.txt"), "backslash"),
        (entry("link", tarfile.SYMTYPE, "/etc"), "symbolic link"),
        (entry("hard", tarfile.LNKTYPE, "/etc/passwd"), "hard link"),
        (entry("fifo", tarfile.FIFOTYPE), "FIFO"),
        (entry("tty", tarfile.CHRTYPE), "device file"),
        (entry("disk", tarfile.BLKTYPE), "device file"),
        (entry("odd", b"Z"), "unsupported entry type"),
    ],
    ids=lambda value: value.name if isinstance(value, tarfile.TarInfo) else None,
)
def test_refuses_unsafe_tar_entries(info, message, dest, tmp_path):
    path = write_tar(tmp_path / "hostile.tar", [(entry("ok.txt"), b"fine"), (info, b"evil")])
    error = extract_refused(path, dest, tmp_path)
    assert message in error
    assert repr(info.name) in error


def test_refuses_file_reached_through_a_symlink_entry(dest, tmp_path):
    members = [(entry("link", tarfile.SYMTYPE, str(tmp_path)), b""), (entry("link/pwn"), b"x")]
    path = write_tar(tmp_path / "hostile.tar.gz", members)
    assert "symbolic link" in extract_refused(path, dest, tmp_path)
    assert not (tmp_path / "pwn").exists()


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["a.txt", "a.txt"], "appears twice"),
        (["a.txt", "./a.txt"], "appears twice"),
        (["a", "a/b.txt"], "is a file"),
        (["a/b.txt", "a"], "both a folder and a file"),
    ],
)
def test_refuses_duplicate_and_clashing_names(names, message, dest, tmp_path):
    path = write_tar(tmp_path / "dup.tar", [(entry(name), b"data") for name in names])
    assert message in extract_refused(path, dest, tmp_path)


def test_refuses_tar_name_that_is_not_utf8(dest, tmp_path):
    members = [(entry("caf\udce9.txt"), b"latin-1 name")]
    options = {"format": tarfile.GNU_FORMAT, "encoding": "utf-8", "errors": "surrogateescape"}
    path = write_tar(tmp_path / "latin1.tar", members, **options)
    assert b"caf\xe9.txt" in path.read_bytes()
    error = extract_refused(path, dest, tmp_path)
    assert "not valid UTF-8" in error
    assert repr(b"caf\xe9.txt") in error


# --- hostile zip entries ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("info", "message"),
    [
        ("../escaped.txt", "'..'"),
        (zipfile.ZipInfo("/abs.txt"), "absolute path"),
        ("a\\..\\..\\escaped.txt", "backslash"),
        (zip_entry("link", stat.S_IFLNK | 0o777), "symbolic link"),
        (zip_entry("tty", stat.S_IFCHR | 0o644), "device file"),
    ],
)
def test_refuses_unsafe_zip_entries(info, message, dest, tmp_path):
    path = write_zip(tmp_path / "hostile.zip", [("ok.txt", b"fine"), (info, b"/etc/passwd")])
    assert message in extract_refused(path, dest, tmp_path)


def test_refuses_duplicate_zip_entries(dest, tmp_path):
    with pytest.warns(UserWarning, match="Duplicate name"):
        path = write_zip(tmp_path / "dup.zip", [("a.txt", b"one"), ("a.txt", b"two")])
    assert "appears twice" in extract_refused(path, dest, tmp_path)


@pytest.mark.parametrize(
    ("written", "raw"),
    [
        ("caf?.txt", b"caf\xe9.txt"),  # no UTF-8 flag: bytes are taken as cp437, not UTF-8
        ("café.txt", b"caf\xff\xfe.txt"),  # UTF-8 flag set, but the bytes are not UTF-8
    ],
)
def test_refuses_zip_names_that_are_not_utf8(written, raw, dest, tmp_path):
    path = write_zip(tmp_path / "names.zip", [(written, b"data")])
    encoded = written.encode("utf-8")
    assert len(encoded) == len(raw)
    path.write_bytes(path.read_bytes().replace(encoded, raw))
    error = extract_refused(path, dest, tmp_path)
    assert "not valid UTF-8" in error
    assert repr(raw) in error


def test_accepts_unflagged_zip_names_that_are_utf8(dest, tmp_path):
    path = write_zip(tmp_path / "names.zip", [("caf??.txt", b"data")])
    path.write_bytes(path.read_bytes().replace(b"caf??.txt", "café.txt".encode()))
    assert list(archive.extract(path, dest)) == ["café.txt"]
    assert (dest / "café.txt").read_bytes() == b"data"


def test_refuses_encrypted_zip_entries(dest, tmp_path):
    data = bytearray(write_zip(tmp_path / "secret.zip", [("a.txt", b"data")]).read_bytes())
    data[6] |= 1  # general purpose flag, local header
    data[data.index(b"PK\x01\x02") + 8] |= 1  # and central directory
    (tmp_path / "secret.zip").write_bytes(data)
    assert "encrypted" in extract_refused(tmp_path / "secret.zip", dest, tmp_path)


# --- bombs, corruption, not an archive -------------------------------------------------


def gzip_of_tar_zeros(path: Path, size: int) -> Path:
    """A .tar.gz holding one file of ``size`` zero bytes, written without that much memory."""
    info = tarfile.TarInfo("zeros.bin")
    info.size = size
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)  # wbits 31: gzip container
    parts = [compressor.compress(info.tobuf(format=tarfile.PAX_FORMAT))]
    zeros = bytes(MIB)
    parts += [compressor.compress(zeros) for _ in range(size // MIB)]
    parts += [compressor.compress(bytes(2 * tarfile.RECORDSIZE)), compressor.flush()]
    path.write_bytes(b"".join(parts))
    return path


def test_gzip_bomb_stops_at_the_limit(dest, tmp_path):
    bomb = gzip_of_tar_zeros(tmp_path / "bomb.tar.gz", 128 * MIB)
    limit = 3 * MIB + 17
    progress = Recorder()
    with pytest.raises(ArchiveError, match="BRINELITE_MAX_EXTRACT_BYTES") as caught:
        archive.extract(bomb, dest, max_bytes=limit, progress=progress)
    assert "expands past" in str(caught.value)
    written = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    assert limit - MIB <= written <= limit
    assert progress.done < bomb.stat().st_size / 4  # stopped early, did not read it all


def test_zeros_after_the_end_of_the_tar_are_bounded(dest, tmp_path):
    small = io.BytesIO()
    with tarfile.open(fileobj=small, mode="w") as tar:
        tar.addfile(tarfile.TarInfo("empty.txt"))
    path = tmp_path / "padded.tar.gz"
    path.write_bytes(gzip.compress(small.getvalue() + bytes(64 * MIB), compresslevel=1))
    with pytest.raises(ArchiveError, match="expands past"):
        archive.extract(path, dest, max_bytes=MIB)


def test_default_limit_comes_from_the_environment(monkeypatch, dest, tmp_path):
    path = write_tar(tmp_path / "a.tar", [(entry("big.bin"), bytes(5000))])
    monkeypatch.setenv("BRINELITE_MAX_EXTRACT_BYTES", "4000")
    with pytest.raises(ArchiveError, match="4,000 bytes"):
        archive.extract(path, dest)


def test_default_limit_values(monkeypatch):
    monkeypatch.delenv("BRINELITE_MAX_EXTRACT_BYTES", raising=False)
    assert archive.default_limit(1) == 512 * MIB
    assert archive.default_limit(10 * MIB) == 1000 * MIB
    assert archive.default_limit(5 * 1024**3) == 100 * 1024**3
    monkeypatch.setenv("BRINELITE_MAX_EXTRACT_BYTES", "123")
    assert archive.default_limit(10 * MIB) == 123
    for bad in ("lots", "0", "-5"):
        monkeypatch.setenv("BRINELITE_MAX_EXTRACT_BYTES", bad)
        with pytest.raises(ArchiveError, match="BRINELITE_MAX_EXTRACT_BYTES"):
            archive.default_limit(1)


def targz(source: Path, tmp_path: Path) -> bytes:
    path = tmp_path / "good.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(source, arcname="data")
    return path.read_bytes()


def plain_tar(source: Path, tmp_path: Path) -> bytes:
    path = tmp_path / "good.tar"
    with tarfile.open(path, "w") as tar:
        tar.add(source, arcname="data")
    return path.read_bytes()


def zip_bytes(source: Path, tmp_path: Path) -> bytes:
    path = tmp_path / "good.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.write(source / "images" / "sub" / "b.png", "b.png")
    return path.read_bytes()


def flip_crc(data: bytes) -> bytes:
    return data[:-8] + bytes([data[-8] ^ 0xFF]) + data[-7:]


def flip_zip_data(data: bytes) -> bytes:
    middle = len(data) // 2  # inside b.png's stored bytes
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]


@pytest.mark.parametrize(
    ("build", "damage"),
    [
        (targz, lambda data: data[: len(data) // 2]),
        (targz, lambda data: data[:-6]),  # the gzip trailer is cut
        (targz, flip_crc),
        (plain_tar, lambda data: data[: len(data) // 2]),
        (zip_bytes, lambda data: data[: len(data) // 2]),
        (zip_bytes, flip_zip_data),
        (lambda *_: gzip.compress(b"not a tar file at all" * 100), lambda data: data),
    ],
    ids=["tgz-half", "tgz-trailer", "tgz-crc", "tar-half", "zip-half", "zip-crc", "gz-not-tar"],
)
def test_corrupt_archives_raise_archive_error(build, damage, source, dest, tmp_path):
    path = tmp_path / "damaged"
    path.write_bytes(damage(build(source, tmp_path)))
    error = extract_refused(path, dest, tmp_path)
    assert "corrupt or truncated" in error


@pytest.mark.parametrize(
    "page", [b"<!DOCTYPE html><html>login</html>", b"\n  <html><body>Not found</body>", b"<?xml"]
)
def test_html_page_is_not_an_archive(page, dest, tmp_path):
    path = tmp_path / "data.tar.gz"
    path.write_bytes(page)
    with pytest.raises(ArchiveError, match="HTML page, not an archive: check the URL"):
        archive.extract(path, dest)


def test_unknown_bytes_are_not_an_archive(dest, tmp_path):
    path = tmp_path / "data.tar.xz"
    path.write_bytes(b"\xfd7zXZ\x00" + os.urandom(600))
    with pytest.raises(ArchiveError, match="not a .tar, .tar.gz or .zip archive"):
        archive.extract(path, dest)


# --- create ----------------------------------------------------------------------------


def test_create_is_reproducible(source, tmp_path):
    first = archive.create(source, tmp_path / "one.tar.gz")
    os.utime(source / "masks" / "a.png", (1_000_000, 1_000_000))
    (source / "manifest.json").chmod(0o600)
    second = archive.create(source, tmp_path / "two.tar.gz")
    assert first == second
    assert first == hashlib.sha256((tmp_path / "one.tar.gz").read_bytes()).hexdigest()
    assert (tmp_path / "one.tar.gz").read_bytes() == (tmp_path / "two.tar.gz").read_bytes()


def test_create_writes_normalised_members(source, tmp_path):
    out = tmp_path / "data.tar.gz"
    archive.create(source, out)
    assert out.read_bytes()[4:8] == b"\0\0\0\0"  # gzip header mtime
    with tarfile.open(out) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names)
    assert "empty-folder" in names
    assert all(m.uid == m.gid == m.mtime == 0 and m.uname == m.gname == "" for m in members)
    assert {m.mode for m in members if m.isdir()} == {0o755}
    assert {m.mode for m in members if m.isfile()} == {0o644}


def test_create_round_trips_through_extract(source, dest, tmp_path):
    out = tmp_path / "data.tar.gz"
    progress = Recorder()
    archive.create(source, out, progress=progress)
    expected = source_infos(source)
    assert progress.total == progress.done == sum(info.size for info in expected.values())
    assert archive.extract(out, dest) == expected
    assert (dest / "empty-folder").is_dir()


def test_create_refuses_symlinks_and_leaves_nothing(source, tmp_path):
    (source / "images" / "link.png").symlink_to(source / "masks" / "a.png")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(ArchiveError, match="symbolic link"):
        archive.create(source, out_dir / "data.tar.gz")
    assert list(out_dir.iterdir()) == []
