"""``segtrain train --time-limit``: the TimeLimit callback stops after the budget, never sooner.

No test here depends on how long anything takes: the callback's clock is injected, and the CLI
run's budget (a few nanoseconds) has always passed by the end of its first batch.
"""

import csv
import itertools

import numpy as np
import pytest
from conftest import cli_runner, make_pairs

import brinelite


@pytest.fixture
def fit_tiny():
    """fit(callback, epochs): a tiny U-Net on 6 samples, batch 1 (6 steps an epoch)."""
    import segtrain

    model = segtrain.build_model("tiny", 16)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (6, 16, 16, 3)).astype(np.float32)
    y = (rng.uniform(0, 1, (6, 16, 16, 1)) > 0.5).astype(np.float32)

    def fit(callback, epochs):
        history = model.fit(x, y, batch_size=1, epochs=epochs, verbose=0, callbacks=[callback])
        return history.history, int(model.optimizer.iterations.numpy())

    return fit


def ticking(step: float = 1.0):
    """A clock that advances ``step`` seconds every time it is read."""
    counter = itertools.count()
    return lambda: next(counter) * step


def test_stops_after_the_batch_that_passes_the_budget(fit_tiny):
    from segtrain.time_limit import TimeLimit

    limit = TimeLimit(3.5, clock=ticking())  # read at 0 (train begin), then 1, 2, 3, 4 ...
    history, steps = fit_tiny(limit, epochs=5)
    assert limit.stopped
    assert steps == 4  # the fourth batch ends at 4 s, past 3.5 s
    assert len(history["loss"]) == 1  # the cut epoch still ends (and is logged)


def test_every_epoch_records_its_batches_with_or_without_a_budget(fit_tiny):
    from segtrain.time_limit import TimeLimit

    history, _ = fit_tiny(TimeLimit(None), epochs=2)
    assert (history["batches"], history["partial"]) == ([6, 6], [0, 0])
    history, _ = fit_tiny(TimeLimit(3.5, clock=ticking()), epochs=2)
    assert (history["batches"], history["partial"]) == ([4], [1])


def test_zero_budget_stops_after_the_first_batch(fit_tiny):
    from segtrain.time_limit import TimeLimit

    history, steps = fit_tiny(TimeLimit(0, clock=lambda: 100.0), epochs=3)
    assert (steps, len(history["loss"])) == (1, 1)


def test_budget_not_reached_trains_every_epoch(fit_tiny):
    from segtrain.time_limit import TimeLimit

    limit = TimeLimit(1000, clock=ticking())
    history, steps = fit_tiny(limit, epochs=2)
    assert not limit.stopped
    assert (steps, len(history["loss"])) == (12, 2)


def test_cli_time_limit_stops_the_run_and_still_writes_it(tmp_path, capsys, monkeypatch):
    from segtrain.cli import main

    brinelite.install(str(make_pairs(tmp_path / "discs", count=6)), name="gen/discs@1.0.0")
    segtrain_cli = cli_runner(main, "segtrain", capsys, monkeypatch)
    run = tmp_path / "run"
    options = ("--model", "tiny", "--size", "16", "--val", "2", "--precision", "float32")
    result = segtrain_cli(
        "train", "gen/discs", *options, "--epochs", "5", "--time-limit", "1e-9", "--out", run
    )
    assert result.code == 0, result.err
    assert "Time limit: stopping" in result.out
    epoch_line = next(line for line in result.out.splitlines() if " - val_loss: " in line)
    assert epoch_line.startswith("1/4 - ")  # one batch of 4 ran (Keras showed 4/4)
    assert "batches" not in epoch_line and "partial" not in epoch_line
    with (run / "history.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["epoch"] for row in rows] == ["0"] and rows[0]["val_loss"]
    assert (rows[0]["batches"], rows[0]["partial"]) == ("1", "1")  # marked as cut short
    assert float(rows[0]["learning_rate"]) == 0  # auto: the rate decays over the spent budget
    assert (run / "model.keras").is_file() and (run / "curves.png").is_file()


def test_budget_decay_lowers_the_rate_linearly_with_the_clock(fit_tiny):
    from segtrain.budget_decay import BudgetDecay

    # Read at 0 (train begin), then before batches 1..6 at 1..6 s of a 10 s budget.
    history, steps = fit_tiny(BudgetDecay(10, lr=0.5, clock=ticking()), epochs=1)
    assert steps == 6
    assert history["learning_rate"] == pytest.approx([0.5 * (1 - 6 / 10)])


def test_budget_decay_holds_zero_once_the_budget_is_spent(fit_tiny):
    from segtrain.budget_decay import BudgetDecay

    history, _ = fit_tiny(BudgetDecay(2, lr=0.5, clock=ticking()), epochs=2)
    assert history["learning_rate"] == [0.0, 0.0]


def test_budget_decay_refuses_an_empty_budget():
    from segtrain.budget_decay import BudgetDecay

    with pytest.raises(ValueError, match="budget > 0"):
        BudgetDecay(0, lr=1e-3)


def test_lr_schedule_auto_is_budget_with_a_time_limit_and_plateau_without():
    from segtrain.config import RunConfig

    assert RunConfig(time_limit=5).schedule == "budget"
    assert RunConfig().schedule == "plateau"
    assert RunConfig(time_limit=5, lr_schedule="plateau").schedule == "plateau"


def test_budget_schedule_without_a_time_limit_is_refused():
    from segtrain.config import RunConfig
    from segtrain.errors import SegtrainError

    with pytest.raises(SegtrainError, match="give --time-limit"):
        RunConfig(lr_schedule="budget")


def test_time_limit_is_refused_for_several_processes():
    from segtrain.config import RunConfig
    from segtrain.errors import SegtrainError

    config = RunConfig(
        model="tiny", size=16, strategy="data-parallel", num_processes=2, process_id=0,
        coordinator="127.0.0.1:1234", time_limit=5,
    )  # fmt: skip
    with pytest.raises(SegtrainError, match="bound the run with --epochs"):
        config.resolved(environ={})
