"""segtrain train --val-split / --train-split: folds from the splits a dataset declares."""

import json

import pytest
from conftest import camvid_subset, cli_runner

import brinelite

TINY = ("--model", "tiny", "--size", "32", "--batch-size", "2", "--lr", "3e-3", "--epochs", "1")
F32 = (*TINY, "--precision", "float32", "--quiet")


@pytest.fixture
def segtrain_cli(capsys, monkeypatch):
    from segtrain.cli import main

    return cli_runner(main, "segtrain", capsys, monkeypatch)


@pytest.fixture
def camvid(tmp_path) -> brinelite.Dataset:
    """Four CamVid train frames and two val frames with their splits, installed."""
    src = camvid_subset(tmp_path / "camvid", train=4, val=2)
    built = brinelite.build(src, "lab/camvid", "1.0.0", tmp_path / "camvid.tar.gz")
    brinelite.install(str(built.archive), quiet=True)
    return brinelite.load_dataset("lab/camvid")


def rows(dataset: brinelite.Dataset) -> list[int]:
    return dataset.indices.tolist()


def test_val_split_trains_on_the_declared_folds_and_evaluate_uses_them(
    camvid, tmp_path, segtrain_cli
):
    """Before: there was no --val-split; --val took a random fold, mixing the video's frames."""
    run = tmp_path / "run"
    trained = segtrain_cli("train", "lab/camvid", *F32, "--val-split", "val", "--out", run)
    assert trained.code == 0, trained.err
    split = json.loads((run / "split.json").read_text())
    assert split == {"val": rows(camvid.split("val")), "train": rows(camvid.split("train"))}
    config = json.loads((run / "config.json").read_text())
    assert (config["val_split"], config["train_split"], config["val"]) == ("val", None, None)
    evaluated = segtrain_cli("evaluate", run)
    assert evaluated.code == 0, evaluated.err
    scores = json.loads((run / "evaluation-val.json").read_text())
    assert scores["images"] == 2  # the run's validation split


def test_train_split_with_a_random_validation_fold(camvid, tmp_path, segtrain_cli):
    """--train-split without --val-split: --val rows drawn from that split, the rest trains."""
    run = tmp_path / "run"
    trained = segtrain_cli(
        "train", "lab/camvid", *F32, "--train-split", "train", "--val", "1", "--out", run
    )
    assert trained.code == 0, trained.err
    split = json.loads((run / "split.json").read_text())
    assert len(split["val"]) == 1 and sorted(split["val"] + split["train"]) == rows(
        camvid.split("train")
    )


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (("--val", "2", "--val-split", "val"), ("--val and --val-split both choose",)),
        (("--val-split", "test"), ("no split 'test'", "its splits: train, val")),
        (("--train-split", "tra\x1bin"), ("no split 'tra\\x1bin'",)),
        (("--val-split", "val", "--train-split", "val"), ("--train-split are both 'val'",)),
    ],
)
def test_bad_split_options_are_one_line(camvid, tmp_path, segtrain_cli, options, words):
    result = segtrain_cli("train", "lab/camvid", *F32, *options, "--out", tmp_path / "run")
    assert result.code == 1
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.err
    assert all(word in lines[0] for word in words), lines[0]
    assert not (tmp_path / "run").exists()
