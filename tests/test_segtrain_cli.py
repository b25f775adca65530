"""The segtrain command: train -> evaluate -> predict on a tiny dataset, and its one-line errors."""

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import make_pairs, one_line_error

import brinelite

TINY = ("--model", "tiny", "--size", "32", "--batch-size", "2", "--val", "2", "--lr", "3e-3")
NATIVE_LOG = re.compile(r"[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] ")
F32 = (*TINY, "--precision", "float32")
RUN_FILES = {
    "config.json", "split.json", "best.weights.h5", "model.keras", "history.csv",
    "curves.png", "logs", "backup", "evaluation-val.csv", "evaluation-val.json",
}  # fmt: skip
OLD_HISTORY_NAMES = {"soft_dice": "dice", "val_soft_dice": "val_dice"}  # before issue 27


@pytest.fixture
def discs(tmp_path) -> str:
    """Eight generated 48x64 disc pairs, installed as gen/discs@1.0.0."""
    brinelite.install(str(make_pairs(tmp_path / "discs", count=8)), name="gen/discs@1.0.0")
    return "gen/discs"


def png(path: Path) -> np.ndarray:
    """A PNG file's pixels; fails the test if it does not decode."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, f"{path} is not a valid image"
    return image


def test_train_evaluate_predict(discs, tmp_path, segtrain_cli):
    run = tmp_path / "run"
    trained = segtrain_cli("train", discs, *F32, "--epochs", "2", "--out", run)
    assert trained.code == 0, trained.err
    assert "Run folder:" in trained.out and "precision float32" in trained.out
    assert {path.name for path in run.iterdir()} == RUN_FILES
    config = json.loads((run / "config.json").read_text())
    dataset = brinelite.load_dataset(discs)
    assert config["dataset"]["ref"] == "gen/discs@1.0.0"
    assert config["dataset"]["fingerprint"] == dataset.manifest.fingerprint
    assert config["dataset"]["sha256"] == dataset.sha256
    assert (config["model"], config["size"], config["precision"]) == ("tiny", 32, "float32")
    assert config["xla"] is False and config["backend"] == "tensorflow"
    split = json.loads((run / "split.json").read_text())
    assert len(split["val"]) == 2 and sorted(split["val"] + split["train"]) == list(range(8))
    with (run / "history.csv").open() as handle:
        history = list(csv.DictReader(handle))
    columns = {"loss", "val_loss", "soft_dice", "val_soft_dice", "batches", "partial"}
    assert len(history) == 2 and columns <= set(history[0])
    assert [(row["batches"], row["partial"]) for row in history] == [("3", "0")] * 2
    # "dice" is evaluate's thresholded full-size score only; training's is named soft_dice
    assert not any(column in ("dice", "val_dice") or "coeff" in column for column in history[0])
    assert png(run / "curves.png").shape[2] in (3, 4)
    assert any((run / "logs").rglob("events.out.tfevents.*"))

    # train ends with the figure segtrain evaluate gives for the same weights and fold
    last = [line for line in trained.out.splitlines() if line.startswith("Validation fold")]
    trained_dice = float(last[0].split(" dice ")[1].split()[0])
    evaluated = segtrain_cli("evaluate", run)
    assert evaluated.code == 0, evaluated.err
    assert "all_foreground" in evaluated.out and "all_background" in evaluated.out
    summary = json.loads((run / "evaluation-val.json").read_text())
    assert summary["images"] == 2 and 0 <= summary["model"]["dice"] <= 1
    assert f"model           dice {trained_dice:.4f}" in evaluated.out
    assert round(summary["model"]["dice"], 4) == trained_dice
    assert summary["all_background"]["dice"] == 0  # every disc mask has foreground
    with (run / "evaluation-val.csv").open() as handle:
        scores = list(csv.DictReader(handle))
    assert sorted(int(row["row"]) for row in scores) == sorted(split["val"])

    images = tmp_path / "discs" / "images"
    predicted = segtrain_cli("predict", run, images, "--out", tmp_path / "predictions")
    assert predicted.code == 0, predicted.err
    for stem in (path.stem for path in images.iterdir()):
        mask = png(tmp_path / "predictions" / f"{stem}.mask.png")
        assert mask.shape == (48, 64) and set(np.unique(mask)) <= {0, 255}
        assert png(tmp_path / "predictions" / f"{stem}.overlay.png").ndim == 3
    assert png(tmp_path / "predictions" / "contact_sheet.png").ndim == 3

    validation_only = segtrain_cli("predict", run)  # default: the run's validation images
    assert validation_only.code == 0, validation_only.err
    assert len(list((run / "predictions").glob("*.overlay.png"))) == 2

    again = segtrain_cli("train", discs, *F32, "--epochs", "2", "--out", run)
    assert again.code == 1 and "--resume" in again.err
    changed = segtrain_cli("train", discs, *F32, "--seed", "7", "--out", run, "--resume")
    assert changed.code == 1 and "seed 42 -> 7" in changed.err
    assert "--process-id" in changed.err and "_" not in changed.err.split("only ")[1]
    # a run of before the metric's renaming resumes: its history gets today's columns
    old = [{OLD_HISTORY_NAMES.get(k, k): v for k, v in row.items()} for row in history]
    with (run / "history.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(
            handle,
            ["epoch", "dice", "learning_rate", "loss", "val_dice", "val_loss"],
            extrasaction="ignore",
        )
        writer.writeheader()
        writer.writerows(old)
    resumed = segtrain_cli(
        "train", discs, *F32, "--epochs", "3", "--out", run, "--resume", "--xla", "--quiet"
    )  # a speed option: it may change on resume
    assert resumed.code == 0, resumed.err
    assert "Epoch" not in resumed.out and "Run folder:" in resumed.out  # --quiet
    assert json.loads((run / "config.json").read_text())["xla"] is True
    with (run / "history.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["epoch"] for row in rows] == ["0", "1", "2"]
    assert [row["soft_dice"] for row in rows[:2]] == [row["soft_dice"] for row in history]
    assert [row["batches"] for row in rows] == ["NA", "NA", "3"]  # unknown before
    assert float(rows[2]["learning_rate"]) == pytest.approx(3e-3)  # not batches' 3: in order


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (("--model", "unet99"), ("unknown model 'unet99'", "tiny")),
        (("--model", "tiny", "--size", "36"), ("36", "divisible", "8")),
        (("--model", "tiny", "--size", "32", "--val", "0"), ("--val 0", "empty validation")),
        (("--model", "tiny", "--size", "32", "--val", "8"), ("--val 8", "empty")),
        (("--strategy", "cluster"), ("cluster",)),
        (("--strategy", "multi-worker"), ("multi-worker is gone", "--strategy data-parallel")),
        (("--precision", "float16"), ("unknown precision 'float16'", "mixed_bfloat16")),
        (("--lr", "-1"), ("lr must be above 0",)),
        (
            ("--strategy", "data-parallel", "--coordinator", "nohost"),
            ("'nohost' is not HOST:PORT",),
        ),
        (
            ("--strategy", "data-parallel", "--num-processes", "2", "--process-id", "2"),
            ("--process-id 2 is not below --num-processes 2", "0 to 1"),
        ),
        (("--strategy", "data-parallel", "--num-processes", "2"), ("needs --coordinator",)),
        (
            ("--num-processes", "2"),
            ("options of --strategy data-parallel, not of --strategy default",),
        ),
        (("--strategy", "mirrored", "--process-id", "1"), ("not of --strategy mirrored",)),
    ],
)
def test_bad_training_options(discs, tmp_path, segtrain_cli, options, words):
    one_line_error(segtrain_cli("train", discs, *options, "--out", tmp_path / "run"), *words)


def test_dataset_without_a_mask_column(pairs_src, tmp_path, segtrain_cli):
    table = tmp_path / "labels" / "rows.csv"
    table.parent.mkdir()
    shutil.copytree(pairs_src / "images", table.parent / "images")
    rows = [f"images/{path.name},disc\n" for path in sorted(pairs_src.glob("images/*"))]
    table.write_text("image,label\n" + "".join(rows))
    config = table.parent / "config.json"
    columns = [{"name": "image", "type": "image"}, {"name": "label", "type": "category"}]
    config.write_text(json.dumps({"path": "rows.csv", "columns": columns}))
    archive = brinelite.build(config, "gen/labels", "1.0.0", out=tmp_path / "labels.tar.gz")
    brinelite.install(str(archive.archive))
    result = segtrain_cli("train", "gen/labels", *TINY, "--out", tmp_path / "run")
    one_line_error(result, "no image column 'mask'", "label (category)", "--mask-column")


def test_images_that_fail_to_decode(discs, tmp_path, segtrain_cli):
    """The run fails in its first epoch: the run folder is left as it was, so the same
    command runs again once the image is fixed (it used to keep config.json and refuse)."""
    dataset = brinelite.load_dataset(discs)
    broken = dataset.path / dataset[5].image
    broken.write_bytes(b"not a png")
    result = segtrain_cli("train", discs, *TINY, "--epochs", "1", "--out", tmp_path / "run")
    one_line_error(result, str(broken), "cannot be decoded")
    assert not (tmp_path / "run").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("kept")
    again = segtrain_cli("train", discs, *TINY, "--epochs", "1", "--out", tmp_path / "mine")
    one_line_error(again, str(broken), "cannot be decoded")
    assert [path.name for path in (tmp_path / "mine").iterdir()] == ["notes.txt"]


def test_a_raw_folder_is_refused_with_the_command_that_installs_it(
    pairs_src, tmp_path, cli, segtrain_cli
):
    """brinelite show reads a raw images/ + masks/ folder; segtrain says how to install it."""
    result = segtrain_cli("train", pairs_src, *TINY, "--out", tmp_path / "run")
    one_line_error(
        result, "no brinelite dataset", f"brinelite install {pairs_src} --name local/pairs"
    )
    assert not (tmp_path / "run").exists()
    assert cli("install", pairs_src, "--name", "local/pairs").code == 0  # the command works
    one_line_error(
        segtrain_cli("train", tmp_path / "nothere", "--out", tmp_path / "run"),
        "no such dataset folder",
    )


def help_screens(app) -> list[tuple[str, ...]]:
    """Every command path of a typer app, the app's own first: ("install",), ("cache", "dir")."""
    import typer

    def walk(command, path):
        yield path
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, (*path, name))

    return list(walk(typer.main.get_command(app), ()))


@pytest.mark.parametrize("program", ["brinelite", "segtrain"])
def test_help_screens_read_plainly(program, cli, segtrain_cli):
    """-h on every command; values as DATASET / --out PATH, not typer's {dataset} / <path>;
    no reST backticks; and "the seed" no longer stands for the Carvana workflow."""
    from brinelite.cli import app as brinelite_app
    from segtrain.cli import app as segtrain_app

    run, app = (cli, brinelite_app) if program == "brinelite" else (segtrain_cli, segtrain_app)
    for path in help_screens(app):
        shown = run(*path, "-h")
        assert shown.code == 0 and "Usage:" in shown.out, (path, shown.err)
        for placeholder in (
            "<str>",
            "<int>",
            "<float>",
            "<path>",
            "{",
            "``",
            "seed's",
            "as the seed",
        ):
            assert placeholder not in shown.out, (path, placeholder, shown.out)
    assert "--out PATH" in segtrain_cli("train", "-h").out
    assert "[OPTIONS] DATASET" in segtrain_cli("train", "-h").out
    version = run("--version")
    assert version.code == 0 and version.out.startswith(f"{program} 0.")


def test_ctrl_c_keeps_the_finished_epochs_and_says_how_to_resume(discs, tmp_path):
    """SIGINT after the first epoch's line: the run folder holds what a finished run writes for
    that epoch, and the one line names the epoch and the command that resumes."""
    run = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "segtrain",
        "train",
        discs,
        *F32,
        "--epochs",
        "500",
        "--out",
        str(run),
    ]
    training = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in training.stdout:
        if " - val_loss: " in line:  # printed once the epoch's row, checkpoint and backup exist
            training.send_signal(signal.SIGINT)
            break
    _, err = training.communicate()
    assert training.returncode == 130, err
    # TensorFlow's C++ logger (absl) writes to the process's stderr at run time whatever
    # TF_CPP_MIN_LOG_LEVEL says (e.g. "E1206 ... util.cc:131] oneDNN supports DT_INT32 only
    # on ..."): its lines are TensorFlow's, not segtrain's, so they are left out here.
    lines = [line for line in err.strip().splitlines() if not NATIVE_LOG.match(line)]
    assert len(lines) == 1 and lines[0].startswith("Interrupted in epoch "), err
    assert "keeps " in lines[0] and lines[0].endswith(f"--out {run} --resume")
    assert {"history.csv", "curves.png", "best.weights.h5", "model.keras", "backup"} <= {
        path.name for path in run.iterdir()
    }
    with (run / "history.csv").open() as handle:
        finished = len(list(csv.DictReader(handle)))
    assert finished >= 1 and f"epoch {finished + 1} of 500" in lines[0]


def test_run_dir_without_weights(discs, tmp_path, segtrain_cli):
    one_line_error(segtrain_cli("evaluate", tmp_path), "not a segtrain run folder")
    (tmp_path / "config.json").write_text("{}")
    one_line_error(segtrain_cli("evaluate", tmp_path), "no best.weights.h5")
    one_line_error(segtrain_cli("predict", tmp_path, tmp_path), "no best.weights.h5")


def test_errors_are_one_line_in_a_real_process(tmp_path):
    """TensorFlow's C++ start-up notices must not bury the one-line error."""
    result = subprocess.run(
        [sys.executable, "-m", "segtrain", "evaluate", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"Error: {tmp_path} is not a segtrain run folder: it has no config.json"
    ]


def test_checks_come_before_keras_is_imported(discs, tmp_path):
    """A bad option, or a run folder already there, fails before Keras/TensorFlow load."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    code = f"""
import sys
import segtrain
for options in ({{"strategy": "multi-worker"}}, {{"model": "tiny", "size": 32, "val": 2}}):
    try:
        segtrain.train({discs!r}, {str(tmp_path / "run")!r}, **options)
    except segtrain.SegtrainError as error:
        print(error)
assert "keras" not in sys.modules and "tensorflow" not in sys.modules, "Keras was imported"
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "data-parallel" in lines[0] and "already holds a run" in lines[1]


def test_training_log_has_one_line_per_epoch(discs, tmp_path):
    """``segtrain train ... > train.log``: no progress bars or escape codes, a line an epoch."""
    log = tmp_path / "train.log"
    command = [sys.executable, "-m", "segtrain", "train", discs, *TINY, "--epochs", "2"]
    with log.open("w") as handle:
        result = subprocess.run(
            [*command, "--out", str(tmp_path / "run")], stdout=handle, stderr=subprocess.PIPE
        )
    assert result.returncode == 0, result.stderr.decode()
    text = log.read_text()
    assert "\r" not in text and "\x1b" not in text
    assert "Epoch 1/2" in text and "Epoch 2/2" in text
    epochs = [line for line in text.splitlines() if " - val_loss: " in line]
    assert len(epochs) == 2 and all(
        " soft_dice: " in line and "val_soft_dice" in line for line in epochs
    )
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["precision_requested"] == "auto"
    assert f"precision {config['precision']} (auto asked)" in text


def test_library_import_prints_no_tensorflow_banner():
    """The README's import is quiet on stderr; a real error during the import still shows."""
    code = "from segtrain import get_unet_256, make_processor, build_model; build_model('tiny', 32)"
    quiet = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    broken = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "KERAS_BACKEND": "no-such-backend"},
    )
    assert broken.returncode == 1 and "no-such-backend" in broken.stderr


def test_data_parallel_refuses_another_backend(discs, tmp_path, segtrain_cli, monkeypatch):
    """data-parallel runs on JAX: KERAS_BACKEND asking otherwise, or Keras already on TF."""
    options = (*TINY, "--strategy", "data-parallel", "--out", tmp_path / "run")
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    one_line_error(segtrain_cli("train", discs, *options), "KERAS_BACKEND is tensorflow", "unset")
    monkeypatch.delenv("KERAS_BACKEND")
    import keras  # this test process runs Keras on TensorFlow

    assert keras.config.backend() == "tensorflow"
    result = segtrain_cli("train", discs, *options)
    one_line_error(result, "already imported Keras on tensorflow", "new process")


def test_the_torch_keras_backend_is_refused_in_one_line(discs, tmp_path):
    """Keras on torch runs eagerly on CPU, many times slower per step: segtrain says so."""
    result = subprocess.run(
        [sys.executable, "-m", "segtrain", "train", discs, *TINY, "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        env={**os.environ, "KERAS_BACKEND": "torch"},
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "Error: segtrain trains on the tensorflow or jax Keras backend, not torch (several times "
        "slower per step on CPU, see docs/segtrain.md): set KERAS_BACKEND=tensorflow or "
        "KERAS_BACKEND=jax"
    ]
    assert not (tmp_path / "r").exists()
