"""Run folders from anyone: typed records, capped reads, outputs kept, checks before Keras."""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import make_pairs, one_line_error

import brinelite
from segtrain.config import RunConfig
from segtrain.errors import SegtrainError
from segtrain.records import DatasetRecord, RunRecord
from segtrain.run_folder import BACKUP, METADATA, RunFolder


def untrained_run(tmp_path: Path, weights: bool = False) -> Path:
    """A run folder as ``segtrain train`` leaves it, on four 16x16 disc pairs, without training:
    best.weights.h5 holds a fresh tiny model's weights (``weights``), or is empty."""
    brinelite.install(str(make_pairs(tmp_path / "discs", 4, (16, 16))), name="gen/discs@1.0.0")
    data = brinelite.load_dataset("gen/discs")
    folder = RunFolder(tmp_path / "run")
    config = RunConfig(model="tiny", size=16, val=2, precision="float32")
    folder.write_record(RunRecord(config, DatasetRecord.of(data, "gen/discs")))
    folder.write_split(*data.create_folds((2,), shuffle=True, seed=0))
    if weights:
        from segtrain.models import build_model

        build_model("tiny", 16).save_weights(folder.path / "best.weights.h5")
    else:
        (folder.path / "best.weights.h5").write_bytes(b"")
    return folder.path


def test_the_run_record_reads_back_what_it_wrote(tmp_path):
    run = untrained_run(tmp_path)
    record = RunFolder(run).record()
    assert record.config == RunConfig(model="tiny", size=16, val=2, precision="float32")
    assert record.dataset.ref == "gen/discs@1.0.0" and record.dataset.rows == 4
    assert record.task.kind == "binary" and record.classes is None
    assert RunRecord.from_json(record.to_json(), "x") == record
    written = json.loads((run / "config.json").read_text())
    assert written["size"] == 16 and written["dataset"]["fingerprint"] == record.dataset.fingerprint


def test_hostile_run_folder_files_are_one_line_errors(tmp_path, segtrain_cli):
    """Before: "size": 65536 made predict allocate 51 GB (MemoryError traceback), split.json ->
    /dev/zero made evaluate eat 4.7 GB, then a MemoryError; nothing capped what was read."""
    run = untrained_run(tmp_path)
    config = json.loads((run / "config.json").read_text())
    image = next((tmp_path / "discs" / "images").iterdir())

    (run / "config.json").write_text(json.dumps(config | {"size": 65536}))
    one_line_error(segtrain_cli("predict", run, image), "config.json", "65536 is above 4096")
    (run / "config.json").write_text(json.dumps(config) + " " * (1 << 20))
    one_line_error(segtrain_cli("evaluate", run), "config.json is larger than segtrain reads")
    (run / "config.json").unlink()
    (run / "config.json").symlink_to("/dev/zero")
    one_line_error(segtrain_cli("evaluate", run), "config.json is not a regular file")
    (run / "config.json").unlink()
    (run / "config.json").write_text(json.dumps(config))

    (run / "split.json").write_text(json.dumps({"val": [0], "train": [1], "pad": "x" * 2000}))
    one_line_error(segtrain_cli("evaluate", run), "split.json is larger than segtrain reads")
    (run / "split.json").unlink()
    (run / "split.json").symlink_to("/dev/zero")
    one_line_error(segtrain_cli("evaluate", run), "split.json is not a regular file")

    folder = RunFolder(run)
    (run / "history.csv").symlink_to("/dev/zero")
    with pytest.raises(SegtrainError, match="history.csv is not a regular file"):
        folder.history()
    (run / BACKUP).mkdir()
    (run / BACKUP / METADATA).symlink_to("/dev/zero")
    with pytest.raises(SegtrainError, match=f"{METADATA} is not a regular file"):
        folder.finished_epochs()


def test_predict_keeps_files_in_out_unless_forced(tmp_path, segtrain_cli):
    """Before: a hand-made scan.mask.png and contact_sheet.png were overwritten, exit 0."""
    run = untrained_run(tmp_path, weights=True)
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "scan.png"), np.full((16, 16, 3), 90, np.uint8))
    out = tmp_path / "out"
    out.mkdir()
    for name in ("scan.mask.png", "contact_sheet.png"):
        (out / name).write_bytes(b"made by hand")

    refused = segtrain_cli("predict", run, photos, "--out", out)
    one_line_error(refused, "scan.mask.png already exists (and 1 more)", "--force")
    assert {p.read_bytes() for p in out.iterdir()} == {b"made by hand"}
    assert sorted(p.name for p in out.iterdir()) == ["contact_sheet.png", "scan.mask.png"]

    forced = segtrain_cli("predict", run, photos, "--out", out, "--force")
    assert forced.code == 0, forced.err
    assert cv2.imread(str(out / "scan.mask.png"), cv2.IMREAD_UNCHANGED).shape == (16, 16)
    assert cv2.imread(str(out / "contact_sheet.png")) is not None


def keras_groups_dropped(path: Path) -> None:
    """Delete every group of a Keras weights file but the top level's (a tampered file)."""
    import h5py

    with h5py.File(path, "r+") as weights:
        for name in list(weights["layers"]):
            del weights["layers"][name]


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        ("garbage", "best.weights.h5 is not a weights file segtrain wrote; restore it"),
        ("other-hdf5", "best.weights.h5 does not fit the tiny model"),
        ("groups-dropped", "best.weights.h5 does not fit the tiny model"),
    ],
)
def test_a_weights_file_segtrain_did_not_write_is_one_line(tmp_path, segtrain_cli, tamper, message):
    """Before: h5py's OSError ("file signature not found"), a KeyError from another HDF5 file,
    or Keras' "Skipping ..." warnings then a model of untrained weights."""
    import h5py

    run = untrained_run(tmp_path, weights=True)
    weights = run / "best.weights.h5"
    if tamper == "garbage":
        weights.write_bytes(b"not an HDF5 file at all" * 10)
    elif tamper == "other-hdf5":
        weights.unlink()
        with h5py.File(weights, "w") as other:
            other["x"] = np.arange(3)
    else:
        keras_groups_dropped(weights)
    image = next((tmp_path / "discs" / "images").iterdir())
    with warnings.catch_warnings(record=True) as caught:  # what a terminal would show
        warnings.simplefilter("always")
        refused = segtrain_cli("predict", run, image, "--out", tmp_path / "out")
    one_line_error(refused, message)
    assert not [w for w in caught if "Skipping" in str(w.message)]  # "... nested container"
    assert not (tmp_path / "out").exists()


def test_a_missing_run_folder_is_refused_before_keras_loads(tmp_path):
    """Before: 17 s of TensorFlow start-up first, and predict said "has no best.weights.h5"."""
    missing, image = tmp_path / "nothere", tmp_path / "scan.png"
    cv2.imwrite(str(image), np.zeros((8, 8, 3), np.uint8))
    code = f"""
import sys
from segtrain.cli import main
for command in (["evaluate"], ["predict"], ["predict", {str(image)!r}]):
    sys.argv = ["segtrain", command[0], {str(missing)!r}, *command[1:]]
    try:
        main()
    except SystemExit as exit:
        print(exit.code)
assert "keras" not in sys.modules and "tensorflow" not in sys.modules, "Keras was imported"
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "1", "1"]
    expected = f"Error: {missing} is not a segtrain run folder: it has no config.json"
    assert result.stderr.splitlines() == [expected] * 3
    assert not os.path.exists(missing)


def test_a_model_save_that_fails_midway_leaves_the_previous_model_whole(tmp_path):
    # before: model.save wrote model.keras in place, and a failure (a kill) left it torn
    from segtrain.models import build_model
    from segtrain.run_folder import FINAL_MODEL
    from segtrain.runtime import import_keras

    folder = RunFolder(tmp_path)
    network = build_model("tiny", 16)
    assert folder.save_model(network) == tmp_path / FINAL_MODEL
    before = (tmp_path / FINAL_MODEL).read_bytes()

    def killed(store):
        raise KeyboardInterrupt  # after the archive's config, while its weights are written

    network.save_own_variables = killed
    with pytest.raises(KeyboardInterrupt):
        folder.save_model(network)
    assert (tmp_path / FINAL_MODEL).read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [FINAL_MODEL]
    assert import_keras().saving.load_model(tmp_path / FINAL_MODEL, compile=False).count_params()


@pytest.mark.parametrize(
    "message, expected",
    [
        (
            "Skipping nested container at 'model/dense': no matching group found in the file",
            "Skipping nested container at 'model/dense'",
        ),
        ("Skipping loading weights for " + "d" * 500 + ": shapes", "Skipping loading " + "w"),
        ("Skipping\nTraceback (most recent call last):\n  ...", "Keras skipped part of"),
    ],
)
def test_a_keras_skipping_warning_becomes_a_one_line_error(tmp_path, message, expected):
    # before: the warning's text up to its first ":", whatever its length or lines
    from segtrain.runtime import WeightsSkipped, load_weights

    class Model:
        def load_weights(self, path):
            warnings.warn(message, stacklevel=1)

    with pytest.raises(WeightsSkipped) as caught:
        load_weights(Model(), tmp_path / "best.weights.h5")
    shown = str(caught.value)
    assert shown.startswith(expected) and len(shown.splitlines()) == 1 and len(shown) <= 200
