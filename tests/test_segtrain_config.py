"""RunConfig: one definition of the training options, checked before anything heavy loads."""

import dataclasses
import json

import pytest
from typer.testing import CliRunner

from segtrain.config import RunConfig
from segtrain.errors import SegtrainError


def test_defaults_are_the_seeds_but_model_batch_rate_and_best_epoch():
    config = RunConfig()
    assert (config.model, config.val, config.epochs) == ("small", None, 100)
    assert config.resolved(cpuinfo="flags : avx2").val == 20  # unless --val-split is given
    assert (config.optimizer, config.precision, config.strategy) == ("rmsprop", "auto", "default")
    assert config.resolved(cpuinfo="flags : avx2").size == 128
    assert config.monitor == "val_soft_dice"


@pytest.mark.parametrize(
    "given, rows, batch, lr",
    [
        ({}, 24, 1, 3e-4),  # membrane's demo fold
        ({}, 99, 1, 3e-4),
        ({}, 100, 4, 1e-3),  # CamVid's 168 or 184 frames
        ({"batch_size": 8}, 24, 8, 1e-3),  # a batch given, the rate follows it
        ({"lr": 5e-4}, 500, 4, 5e-4),
        ({"batch_size": 1, "lr": 1e-4}, 500, 1, 1e-4),  # the Carvana workflow's, kept
    ],
)
def test_the_batch_and_rate_follow_the_training_fold_unless_given(given, rows, batch, lr):
    sized = RunConfig(**given).for_training(rows)
    assert (sized.batch_size, sized.lr) == (batch, lr)


def test_json_round_trip():
    config = RunConfig(model="tiny", size=32, lr=3e-3, augment=False, xla=True)
    record = json.loads(json.dumps({**config.to_dict(), "dataset": {"ref": "a/b@1.0.0"}}))
    assert RunConfig.from_dict(record) == config


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"model": "unet99"}, "unknown model 'unet99'"),
        ({"model": "unet256", "size": 128}, "unet256 takes input size 256 only"),
        ({"model": "tiny", "size": 36}, "pick a multiple of 8"),
        ({"model": "tiny", "size": 0}, "pick a multiple of 8"),
        ({"batch_size": 0}, "batch_size must be at least 1"),
        ({"epochs": 1.5}, "epochs must be int"),
        ({"augment": "yes"}, "augment must be bool"),
        ({"val": True}, "val must be int"),
        ({"lr": 0.0}, "lr must be above 0"),
        ({"time_limit": 0}, "time_limit must be above 0"),
        ({"time_limit": "5"}, "time_limit must be float or None"),
        ({"time_limit": float("nan")}, "time_limit must be a finite number, not nan"),
        ({"time_limit": float("inf")}, "time_limit must be a finite number, not inf"),
        ({"lr": float("nan")}, "lr must be a finite number, not nan"),
        ({"strategy": "multi-worker"}, "--strategy data-parallel"),
        (
            {"strategy": "cluster"},
            "unknown strategy 'cluster'; choose one of: default, mirrored, data-parallel",
        ),
        ({"precision": "float16"}, "unknown precision 'float16'"),
        ({"learning_rate": 1}, "unknown training option 'learning_rate'"),
        ({"val": 20, "val_split": "val"}, "--val and --val-split both choose"),
        ({"val_split": "val", "train_split": "val"}, "--train-split are both 'val'"),
        ({"val_split": 3}, "val_split must be str or None"),
    ],
)
def test_bad_options_are_one_clear_line(options, message):
    with pytest.raises(SegtrainError, match=message) as caught:
        RunConfig.from_options(options)
    assert "\n" not in str(caught.value)


def test_resume_compares_only_run_defining_options():
    saved = RunConfig(model="tiny", size=32).resolved(cpuinfo="flags : avx2")
    faster = dataclasses.replace(saved, epochs=5, xla=True)
    assert faster.changes_from(saved) == []
    other = dataclasses.replace(saved, seed=7, precision="mixed_bfloat16")
    assert other.changes_from(saved) == ["seed 42 -> 7", "precision float32 -> mixed_bfloat16"]
    assert RunConfig.free_to_change() == [
        "epochs",
        "strategy",
        "process_id",
        "coordinator",
        "bind",
        "xla",
        "time_limit",
        "lr_schedule",
    ]


def test_a_run_folder_from_before_the_optimizer_option_resumes_with_rmsprop():
    record = RunConfig(model="tiny", size=32, optimizer="adam").resolved(cpuinfo="").to_dict()
    del record["optimizer"]  # config.json before the option existed
    old = RunConfig.from_dict(record)
    assert old.optimizer == "rmsprop"
    assert dataclasses.replace(old, optimizer="adam").changes_from(old) == [
        "optimizer rmsprop -> adam"
    ]


def test_process_options_come_from_the_options_then_kerass_variables():
    launcher = {
        "KERAS_DISTRIBUTION_NUM_PROCESSES": "4",
        "KERAS_DISTRIBUTION_PROCESS_ID": "3",
        "KERAS_DISTRIBUTION_JOB_ADDRESSES": "10.0.0.1:1234",
    }
    config = RunConfig(model="tiny", size=32, batch_size=2, strategy="data-parallel")
    launched = config.resolved(cpuinfo="", environ=launcher)
    assert (launched.num_processes, launched.process_id, launched.coordinator) == (
        4, 3, "10.0.0.1:1234",
    )  # fmt: skip
    assert launched.global_batch == 8
    given = dataclasses.replace(config, process_id=1, coordinator="h:9").resolved("", launcher)
    assert (given.num_processes, given.process_id, given.coordinator) == (4, 1, "h:9")
    alone = config.resolved(cpuinfo="", environ={})
    assert (alone.num_processes, alone.process_id, alone.global_batch) == (1, 0, 2)
    # Other strategies ignore the launcher's variables: they run as process 0 of 1.
    default = RunConfig(model="tiny", size=32).resolved(cpuinfo="", environ=launcher)
    assert (default.num_processes, default.process_id, default.coordinator) == (1, 0, None)


@pytest.mark.parametrize(
    ("options", "environ", "message"),
    [
        ({"num_processes": 2}, {}, "needs --coordinator HOST:PORT"),
        (
            {"num_processes": 2, "process_id": 2},
            {},
            "--process-id 2 is not below --num-processes 2",
        ),
        ({"process_id": 1}, {"KERAS_DISTRIBUTION_NUM_PROCESSES": "1"}, "not below"),
        ({"coordinator": "10.0.0.1"}, {}, "is not HOST:PORT"),
        ({"coordinator": "h:99999"}, {}, "is not HOST:PORT"),
        ({"num_processes": 3, "coordinator": "a:1,b:2"}, {}, "lists 2 addresses for 3"),
        ({}, {"KERAS_DISTRIBUTION_NUM_PROCESSES": "two"}, "is not a whole number"),
        ({"num_processes": 0}, {}, "num_processes must be at least 1"),
    ],
)
def test_bad_process_options(options, environ, message):
    with pytest.raises(SegtrainError, match=message) as caught:
        RunConfig(strategy="data-parallel", **options).resolved(cpuinfo="", environ=environ)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("strategy", ["default", "mirrored"])
def test_process_options_belong_to_data_parallel(strategy):
    with pytest.raises(SegtrainError, match=f"not of --strategy {strategy}"):
        RunConfig(strategy=strategy, num_processes=2)


def test_cli_options_are_the_config_fields():
    from segtrain.cli import app

    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for item in dataclasses.fields(RunConfig):
        assert f"--{item.name.replace('_', '-')}" in result.output
    assert "--verbose" in result.output and "--quiet" in result.output


def test_options_and_run_records_share_one_json_type_check():
    from segtrain import records
    from segtrain.config import fits

    assert records.fits is fits  # config.json's fields are read as the options are checked
    assert fits(3, float) and not fits(True, int) and not fits(float("nan"), float)
    assert fits(None, type(None)) and not fits(0, type(None)) and fits(True, bool)
    assert fits([1.0, 2], list[float]) and not fits([1.0, True], list[float])
    assert fits({"keras": "3"}, dict[str, str]) and not fits({"keras": 3}, dict[str, str])
