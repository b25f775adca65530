"""Multi-class datasets: class maps at build, checked masks, shares, info, show, loading.

Uses real CamVid frames and label maps from shared/data/camvid (11 classes + void 11).
"""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

import brinelite
from tests.conftest import SHARED_DATA

CAMVID = SHARED_DATA / "camvid"
NAMES = ["sky", "building", "pole", "road", "pavement", "tree", "sign", "fence", "car",
         "pedestrian", "bicyclist"]  # fmt: skip


def class_map(**extra) -> dict:
    return {"classes": [{"id": k, "name": n} for k, n in enumerate(NAMES)], "ignore": 11, **extra}


@pytest.fixture
def camvid_src(tmp_path):
    """Six CamVid pairs with their classes.json, as a user lays them out."""
    src = tmp_path / "camvid"
    for sub in ("images", "masks"):
        (src / sub).mkdir(parents=True)
    for stem in (CAMVID / "split-train.txt").read_text().split()[:6]:
        for sub in ("images", "masks"):
            shutil.copy(CAMVID / sub / f"{stem}.png", src / sub / f"{stem}.png")
    (src / "classes.json").write_text(json.dumps(class_map()))
    return src


def build_and_install(cli, src, tmp_path, *extra):
    archive = tmp_path / "camvid.tar.gz"
    result = cli("build", src, "--name", "lab/camvid", "--out", archive, "-q", *extra)
    assert result.code == 0, result.err
    assert cli("install", archive, "-q").code == 0
    return brinelite.load_dataset("lab/camvid")


def test_a_class_map_travels_with_the_dataset_and_masks_load_untouched(cli, camvid_src, tmp_path):
    dataset = build_and_install(cli, camvid_src, tmp_path)
    classes = dataset.manifest.classes
    assert classes.names == NAMES and classes.ignore == 11
    assert abs(sum(classes.shares.values()) - 1) < 1e-3 and classes.shares["road"] > 0.1
    row = dataset[0]
    raw = cv2.imread(str(camvid_src / row.mask), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(dataset.load_image(row.mask)[..., 0], raw)  # ids as stored
    info = cli("info", "lab/camvid")
    assert info.code == 0
    road = next(line for line in info.out.splitlines() if " road " in f" {line} ")
    assert road.split()[0] == "3" and road.rstrip().endswith("%")


def test_show_colours_classes_and_draws_a_legend(cli, camvid_src, tmp_path):
    build_and_install(cli, camvid_src, tmp_path)
    binary = cli("show", "demo/membrane", "--out", tmp_path / "b.png", "--rows", "4")
    assert cli("install", "demo/membrane", "-q").code == 0 or binary.code == 0
    assert cli("show", "lab/camvid", "--out", tmp_path / "c.png", "--rows", "4").code == 0
    sheet = cv2.imread(str(tmp_path / "c.png"))
    assert sheet.shape[0] > 224  # one line of tiles plus the legend strip
    legend = sheet[224:]
    assert (legend < 250).any() and (legend == 255).mean() > 0.5  # swatches on white


def test_undeclared_ids_are_refused_naming_the_file_and_value(cli, camvid_src, tmp_path):
    bad = next((camvid_src / "masks").iterdir())
    mask = cv2.imread(str(bad), cv2.IMREAD_UNCHANGED)
    mask[:2, :2] = 42
    cv2.imwrite(str(bad), mask)
    result = cli("build", camvid_src, "--name", "lab/camvid", "--out", tmp_path / "x.tar.gz")
    assert result.code == 1 and len(result.err.strip().splitlines()) == 1
    assert f"masks/{bad.name} holds undeclared values 42" in result.err
    assert not (tmp_path / "x.tar.gz").exists()


def test_colour_masks_are_converted_through_declared_colours(cli, camvid_src, tmp_path):
    palette = {k: [k * 20, 255 - k * 20, (k * 50) % 256] for k in range(12)}
    for path in (camvid_src / "masks").iterdir():
        ids = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        rgb = np.array([palette[v] for v in range(12)], np.uint8)[ids]
        cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    data = class_map(ignore_color=palette[11])
    for entry in data["classes"]:
        entry["color"] = palette[entry["id"]]
    colours = camvid_src / "colours.json"
    colours.write_text(json.dumps(data))
    (camvid_src / "classes.json").unlink()
    uncoloured = cli("build", camvid_src, "--name", "lab/c", "--out", tmp_path / "u.tar.gz",
                     "--classes", tmp_path / "missing.json")  # fmt: skip
    assert uncoloured.code == 1
    dataset = build_and_install(cli, camvid_src, tmp_path, "--classes", colours)
    ids = dataset.load_image(dataset[0].mask)
    original = cv2.imread(str(CAMVID / "masks" / dataset[0].mask.split("/")[-1]), -1)
    assert ids.shape[2] == 1 and np.array_equal(ids[..., 0], original)


def test_colour_masks_without_colours_are_refused(cli, camvid_src, tmp_path):
    path = next((camvid_src / "masks").iterdir())
    ids = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(path), np.dstack([ids, ids, ids]) * 10)
    result = cli("build", camvid_src, "--name", "lab/camvid", "--out", tmp_path / "x.tar.gz")
    assert result.code == 1 and "colour mask" in result.err


def test_a_malformed_class_map_is_one_line(cli, camvid_src, tmp_path):
    (camvid_src / "classes.json").write_text(json.dumps({"classes": [{"id": 0, "name": "a"},
                                                                     {"id": 0, "name": "b"}]}))  # fmt: skip
    result = cli("build", camvid_src, "--name", "lab/camvid", "--out", tmp_path / "x.tar.gz")
    assert result.code == 1 and "share a id" in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_binary_datasets_have_no_class_map(cli):
    assert cli("install", "demo/membrane", "-q").code == 0
    assert brinelite.load_dataset("demo/membrane").manifest.classes is None
