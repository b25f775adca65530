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
