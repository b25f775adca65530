"""The foundation end to end, as a user drives it: build, install, load, fold, feed Keras."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile

import cv2
import numpy as np
import pytest

import brinelite
from brinelite import cache
from brinelite.errors import BuildError, DataError, IntegrityError, ManifestError, NotInstalledError


def test_import_brinelite_does_not_import_tensorflow():
    code = "import sys, brinelite; print('tensorflow' in sys.modules or 'keras' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_build_and_install_membrane_archive(membrane_src, tmp_path, cli):
    archive = tmp_path / "membrane.tar.gz"
    built = cli(
        "build", membrane_src, "--name", "isbi/membrane", "--version", "1.0.0", "--out", archive
    )
    assert built.code == 0, built.err
    assert "30 rows" in built.out and "sha256" in built.out
    sha = built.out.split("sha256 ")[1].split()[0]

    installed = cli("install", archive, "--sha256", sha)
    assert installed.code == 0, installed.err
    assert "isbi/membrane@1.0.0 was installed" in installed.out

    ds = brinelite.load_dataset("isbi/membrane")
    assert len(ds) == 30
    assert [c.name for c in ds.columns] == ["image", "mask"]
    assert ds.columns.image.isimage() and ds.columns.mask.type == "image"
    row = ds[23]
    assert row.image == "images/23.png" and row.mask == "masks/23.png"
    pixels = ds.load_image(row.image)
    assert pixels.shape == (512, 512, 1) and pixels.dtype == np.uint8
    original = cv2.imread(str(membrane_src / "images" / "23.png"), cv2.IMREAD_GRAYSCALE)
    assert np.array_equal(pixels[:, :, 0], original)

    again = cli("install", archive)
    assert again.code == 0 and "already installed" in again.out
    assert cli("verify", "isbi/membrane").code == 0
    info = cli("info", "isbi/membrane")
    assert "30" in info.out and sha in info.out and "image (image)" in info.out


def test_install_plain_folder_needs_a_name(kvasir_src, cli):
    refused = cli("install", kvasir_src)
    assert refused.code == 1 and "--name" in refused.err and "Traceback" not in refused.err
    assert cache.installed() == []

    done = cli("install", kvasir_src, "--name", "simula/kvasir-seg@0.1.0")
    assert done.code == 0, done.err
    ds = brinelite.load_dataset("simula/kvasir-seg", version="0.1.0")
    assert len(ds) == 12
    image = ds.load_image(ds[0].image)
    mask = ds.load_image(ds[0].mask)
    assert image.shape[2] == 3 and mask.shape[2] == 1 and image.shape[:2] == mask.shape[:2]
    # RGB order: the JPEG decoded by OpenCV (BGR) reversed.
    bgr = cv2.imread(str(kvasir_src / ds[0].image))
    assert np.array_equal(image, bgr[:, :, ::-1])


def test_install_dataset_folder_and_side_by_side_versions(pairs_src, tmp_path):
    for version in ("1.0.0", "1.1.0"):
        brinelite.build(pairs_src, "gen/discs", version, out=tmp_path / f"{version}.tar.gz")
        brinelite.install(str(tmp_path / f"{version}.tar.gz"))
    assert brinelite.list_datasets() == ["gen/discs@1.0.0", "gen/discs@1.1.0"]
    assert brinelite.load_dataset("gen/discs").version == "1.1.0"
    assert brinelite.load_dataset("gen/discs@1.0.0").version == "1.0.0"
    folder = cache.dataset_path(brinelite.load_dataset("gen/discs").manifest.ref)
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    assert brinelite.load_dataset(str(copy)).name == "gen/discs"
    result = brinelite.install(str(copy), force=True)
    assert result.ref.version is not None and not result.already


def test_install_from_http_url(pairs_src, tmp_path, httpserver):
    archive = tmp_path / "discs.tar.gz"
    built = brinelite.build(pairs_src, "gen/discs", "2.0.0", out=archive)
    httpserver.expect_request("/discs.tar.gz").respond_with_data(archive.read_bytes())
    url = httpserver.url_for("/discs.tar.gz")
    result = brinelite.install(url, sha256=built.sha256, quiet=True)
    assert str(result.ref) == "gen/discs@2.0.0" and result.sha256 == built.sha256
    assert len(brinelite.load_dataset("gen/discs")) == 8
    assert brinelite.install(url, quiet=True).already
    assert len(httpserver.log) == 1


def test_wrong_sha256_leaves_cache_unchanged(pairs_src, tmp_path, cli):
    archive = tmp_path / "discs.tar.gz"
    brinelite.build(pairs_src, "gen/discs", "1.0.0", out=archive)
    result = cli("install", archive, "--sha256", "0" * 64)
    assert result.code == 1 and "expected " + "0" * 64 in result.err
    assert cache.installed() == []
    with pytest.raises(IntegrityError):
        brinelite.install(str(archive), sha256="f" * 64)


def test_archive_whose_files_disagree_with_manifest_is_refused(pairs_src, tmp_path):
    archive = tmp_path / "discs.tar.gz"
    brinelite.build(pairs_src, "gen/discs", "1.0.0", out=archive)
    unpacked = tmp_path / "unpacked"
    with tarfile.open(archive) as tar:
        tar.extractall(unpacked, filter="data")
    (unpacked / "images" / "000.png").write_bytes(b"tampered")
    bad = tmp_path / "bad.tar"
    with tarfile.open(bad, "w") as tar:
        for path in sorted(unpacked.rglob("*")):
            tar.add(path, arcname=path.relative_to(unpacked).as_posix(), recursive=False)
    with pytest.raises(IntegrityError, match="images/000.png"):
        brinelite.install(str(bad))
    assert cache.installed() == []


def test_build_lists_every_offender(pairs_src, cli):
    (pairs_src / "images" / "extra.png").write_bytes(
        (pairs_src / "images" / "000.png").read_bytes()
    )
    (pairs_src / "masks" / "lonely.png").write_bytes((pairs_src / "masks" / "001.png").read_bytes())
    (pairs_src / "images" / "001.jpg").write_bytes(b"")
    (pairs_src / "masks" / "002.png").write_bytes(b"not a png")
    big = np.zeros((10, 10), np.uint8)
    cv2.imwrite(str(pairs_src / "masks" / "003.png"), big)
    with pytest.raises(BuildError) as raised:
        brinelite.build(pairs_src, "gen/bad", "1.0.0")
    message = str(raised.value)
    for expected in (
        "image without mask: images/extra.png",
        "mask without image: masks/lonely.png",
        "duplicate stem '001'",
    ):
        assert expected in message
    (pairs_src / "images" / "extra.png").unlink()
    (pairs_src / "masks" / "lonely.png").unlink()
    (pairs_src / "images" / "001.jpg").unlink()
    result = cli("build", pairs_src, "--name", "gen/bad")
    assert result.code == 1
    assert "masks/002.png cannot be decoded" in result.err and "size mismatch" in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_build_from_csv_config(tmp_path, pairs_src):
    (tmp_path / "data.csv").write_text(
        "image,mask,label,weight\n"
        + "".join(
            f"pairs/images/00{i}.png,pairs/masks/00{i}.png,{'cat' if i % 2 else 'dog'},{i}.5\n"
            for i in range(4)
        )
    )
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "path": "data.csv",
                "columns": [
                    {"name": "image", "type": "image"},
                    {"name": "mask", "type": "image"},
                    {"name": "label", "type": "category"},
                    {"name": "weight", "type": "float"},
                ],
            }
        )
    )
    brinelite.build(config, "gen/csv", "1.0.0", out=tmp_path / "csv.tar.gz")
    brinelite.install(str(tmp_path / "csv.tar.gz"))
    ds = brinelite.load_dataset("gen/csv")
    assert ds[1].label == "cat" and ds[0].label == "dog" and ds[3].weight == 3.5
    assert ds.columns.label.categories == ("dog", "cat")
    assert ds.load_image(ds[2].image).shape == (48, 64, 3)


@pytest.mark.parametrize(
    "args, words",
    [
        (["install", "Bad Name/x"], "not a dataset name"),
        (["install", "nobody/nothing"], "was not found"),
        (["uninstall", "a/b"], "not installed"),
        (["info", "demo/missing"], "not installed"),
        (["build", "/nonexistent/folder", "--name", "a/b"], "neither a folder"),
        (["build", ".", "--name", "a/b", "--version", "one"], "semantic"),
        (["show", "a/b"], "not installed"),
        (["install"], "Missing argument"),
    ],
)
def test_user_errors_print_one_line(cli, args, words):
    result = cli(*args)
    assert result.code != 0
    assert words in result.err
    assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err


def test_not_installed_suggests_close_names(pairs_src, tmp_path):
    brinelite.build(pairs_src, "gen/discs", "1.0.0", out=tmp_path / "d.tar.gz")
    brinelite.install(str(tmp_path / "d.tar.gz"))
    with pytest.raises(NotInstalledError, match="Did you mean gen/discs"):
        brinelite.load_dataset("gen/disks")


def test_folds_membrane_20_10(membrane_src):
    brinelite.install(str(membrane_src), name="isbi/membrane")
    ds = brinelite.load_dataset("isbi/membrane")
    validation, train = ds.create_folds((20,), seed=3)
    assert (len(validation), len(train)) == (20, 10)
    assert set(validation.indices) | set(train.indices) == set(range(30))
    assert not set(validation.indices) & set(train.indices)
    again, _ = ds.create_folds((20,), seed=3)
    assert list(again.indices) == list(validation.indices)
    first, second, rest = ds.create_folds((5, 5), shuffle=False)
    assert list(first.indices) == [0, 1, 2, 3, 4] and len(rest) == 20
    assert first[0] == ds[0]
    nested_a, nested_b = validation.create_folds((4,), seed=1)
    assert set(nested_a.indices) <= set(validation.indices) and len(nested_b) == 16
    with pytest.raises(DataError, match="more than the 30 rows"):
        ds.create_folds((20, 11))
    pairs = list(ds.kfold(3, seed=0))
    assert len(pairs) == 3 and all(len(v) == 10 and len(t) == 20 for t, v in pairs)
    assert sorted(i for _, v in pairs for i in v.indices) == list(range(30))


def test_corrupt_manifest_is_a_clear_error(pairs_src, tmp_path):
    brinelite.install(str(pairs_src), name="gen/discs")
    folder = cache.dataset_path(brinelite.load_dataset("gen/discs").manifest.ref)
    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="Cannot read"):
        brinelite.load_dataset("gen/discs")


# --- datasets as users bring them (issue 12) ---------------------------------------------------


def test_folds_take_fractions_and_refuse_nonsense(pairs_src):
    """Before: (0.2,) gave folds of 0 and 8, (1.5,) 1/7, (-5,) "add up to -5"."""
    ds = brinelite.load_dataset(str(brinelite.install(str(pairs_src), name="gen/discs").path))
    validation, train = ds.create_folds((0.2,), seed=0)
    assert (len(validation), len(train)) == (2, 6)  # ceil(0.2 * 8), as train_test_split
    a, b, rest = ds.create_folds((0.25, 3), shuffle=False)
    assert list(a.indices) == [0, 1] and list(b.indices) == [2, 3, 4] and len(rest) == 3
    for sizes, words in (
        ((1.5,), "between 0 and 1"),
        ((0.0,), "between 0 and 1"),
        ((-5,), "negative"),
        ((5, 0.5), "ask for 9 rows, more than the 8 rows"),
        (("3",), "not a number"),
    ):
        with pytest.raises(DataError, match=words):
            ds.create_folds(sizes)
    empty, everything = ds.create_folds((0,))
    assert (len(empty), len(everything)) == (0, 8)


def test_subset_takes_only_positions_of_the_view(pairs_src):
    """Before: subset([-1]) gave the last row (numpy counts from the end), [1.7] row 1."""
    ds = brinelite.load_dataset(str(brinelite.install(str(pairs_src), name="gen/discs").path))
    tail = ds[4:]
    assert list(tail.subset([0, 3]).indices) == [4, 7] and len(tail.subset([])) == 0
    assert list(tail.subset(np.array([2], dtype=np.uint8)).indices) == [6]
    for positions, words in (
        ([-1], "Row position -1 is outside"),
        ([4], "Row position 4 is outside gen/discs's 4 rows; pass positions from 0 to 3"),
        ([1.7], "whole numbers, not float64"),
        ([True], "whole numbers, not bool"),
        ([[0]], "whole numbers"),
    ):
        with pytest.raises(DataError, match=words):
            tail.subset(positions)


def test_slices_and_filter_are_views(pairs_src):
    ds = brinelite.load_dataset(str(brinelite.install(str(pairs_src), name="gen/discs").path))
    head = ds[0:3]
    assert isinstance(head, brinelite.Dataset) and list(head.indices) == [0, 1, 2]
    assert head[2] == ds[2] and list(ds[::-3].indices) == [7, 4, 1]
    assert list(ds[5:][1:].indices) == [6, 7]
    odd = ds.filter(lambda row: int(row.image[-5]) % 2 == 1)
    assert list(odd.indices) == [1, 3, 5, 7] and odd._table is ds._table
    assert list(odd.filter(lambda row: row.image.endswith("5.png")).indices) == [5]
    with pytest.raises(TypeError, match="integers or slices"):
        ds["0"]


def test_build_carries_the_card_and_info_shows_it(pairs_src, tmp_path, cli):
    """Before: SOURCE.md/README/LICENSE/CITATION were dropped silently."""
    (pairs_src / "README.md").write_text("# Discs\nGenerated discs for the tests.\n")
    (pairs_src / "LICENSE").write_text("CC-BY-4.0\n\nFull text here.\n")
    (pairs_src / "citation.txt").write_text("Disc, A. (2026). Discs.\n")
    archive = tmp_path / "discs.tar.gz"
    built = cli("build", pairs_src, "--name", "gen/discs", "--out", archive)
    assert built.code == 0 and "card LICENSE, README.md, citation.txt" in built.out
    brinelite.install(str(archive))
    manifest = brinelite.load_dataset("gen/discs").manifest
    assert manifest.license == "CC-BY-4.0" and manifest.citation == "Disc, A. (2026). Discs."
    assert manifest.card == ["LICENSE", "README.md", "citation.txt"]
    shown = cli("info", "gen/discs").out
    assert "citation:" in shown and "Disc, A. (2026)" in shown and "--- README.md ---" in shown
    assert "Generated discs for the tests." in shown
    other = tmp_path / "other.tar.gz"
    flags = ("--license", "MIT", "--citation", "Me (2026)", "--version", "2.0.0")
    assert cli("build", pairs_src, "--name", "gen/discs", "--out", other, *flags).code == 0
    brinelite.install(str(other))
    manifest = brinelite.load_dataset("gen/discs@2.0.0").manifest
    assert (manifest.license, manifest.citation) == ("MIT", "Me (2026)")


def test_old_format_1_manifests_still_read(pairs_src):
    from brinelite.manifest import Manifest

    folder = brinelite.install(str(pairs_src), name="gen/discs").path
    data = json.loads((folder / "manifest.json").read_text())
    data = {k: v for k, v in data.items() if k != "citation"} | {"format_version": 1}
    old = Manifest.from_json(data)
    assert old.format_version == 1 and old.to_json() == data and old.citation == ""
    assert Manifest.from_json(data | {"created": "1999-01-01T00:00:00Z"}).fingerprint == (
        old.fingerprint
    )


def _gif(path, array) -> None:
    ok, encoded = cv2.imencode(".gif", array)
    assert ok
    path.write_bytes(encoded.tobytes())


def test_carvana_layout_and_mask_suffixes_pair(tmp_path, pairs_src):
    """train/NAME.jpg + train_masks/NAME_mask.gif (before: no pairs found), and -mask WebP masks."""
    carvana = tmp_path / "carvana"
    (carvana / "train").mkdir(parents=True)
    (carvana / "train_masks").mkdir()
    for i in range(3):
        image = cv2.imread(str(pairs_src / "images" / f"00{i}.png"))
        mask = cv2.imread(str(pairs_src / "masks" / f"00{i}.png"))
        cv2.imwrite(str(carvana / "train" / f"car{i}.jpg"), image)
        _gif(carvana / "train_masks" / f"car{i}_mask.gif", mask)
    brinelite.build(carvana, "cars/carvana", "1.0.0", tmp_path / "c.tar.gz")
    brinelite.install(str(tmp_path / "c.tar.gz"))
    ds = brinelite.load_dataset("cars/carvana")
    assert ds[0] == ("train/car0.jpg", "train_masks/car0_mask.gif")
    mask = ds.load_image(ds[2].mask)
    expected = cv2.imread(str(pairs_src / "masks" / "002.png"), cv2.IMREAD_GRAYSCALE)
    assert mask.shape == (48, 64, 3) and (mask[:, :, 0] > 127).sum() == (expected > 127).sum()

    for path in sorted((pairs_src / "masks").iterdir()):
        mask = cv2.imread(str(path))
        cv2.imwrite(
            str(path.with_name(path.stem + "-mask.webp")), mask, [cv2.IMWRITE_WEBP_QUALITY, 101]
        )
        path.unlink()
    built = brinelite.build(pairs_src, "gen/webp", "1.0.0", tmp_path / "w.tar.gz")
    assert built.manifest.rows == 8


def test_unsupported_files_are_named(pairs_src):
    """Before: "mask without image: masks/003.png" for an images/003.pgm."""
    (pairs_src / "images" / "003.png").rename(pairs_src / "images" / "003.pgm")
    (pairs_src / "images" / ".DS_Store").write_bytes(b"ignored")
    with pytest.raises(BuildError) as raised:
        brinelite.build(pairs_src, "gen/bad", "1.0.0")
    assert "unsupported file type: images/003.pgm (brinelite reads .png" in str(raised.value)
    assert ".DS_Store" not in str(raised.value)


def test_show_a_raw_folder_before_building(pairs_src, tmp_path, cli):
    result = cli("show", pairs_src, "--out", tmp_path / "raw.png", "--rows", "4")
    assert result.code == 0, result.err
    assert cv2.imread(str(tmp_path / "raw.png")).shape == (8 + 20 + 168 + 8, 8 + 4 * 232, 3)
    assert brinelite.list_datasets() == []  # nothing was installed


def test_prerelease_versions_build_install_and_order(pairs_src, tmp_path, cli):
    """Before: `--version 1.0.0-rc1` was refused as "not semantic"."""
    for version in ("1.0.0-rc1", "1.0.0"):
        out = tmp_path / f"{version}.tar.gz"
        assert (
            cli("build", pairs_src, "--name", "gen/d", "--version", version, "--out", out).code == 0
        )
        brinelite.install(str(out))
    assert brinelite.list_datasets() == ["gen/d@1.0.0-rc1", "gen/d@1.0.0"]
    assert brinelite.load_dataset("gen/d").version == "1.0.0"


def test_build_refuses_to_overwrite_unless_forced(pairs_src, tmp_path, cli):
    """Before: --out X overwrote X silently."""
    out = tmp_path / "precious.tar.gz"
    out.write_bytes(b"keep me")
    refused = cli("build", pairs_src, "--name", "gen/d", "--out", out)
    assert refused.code == 1 and "--force" in refused.err and out.read_bytes() == b"keep me"
    assert cli("build", pairs_src, "--name", "gen/d", "--out", out, "--force").code == 0
    assert out.read_bytes()[:2] == b"\x1f\x8b"
