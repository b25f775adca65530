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
    with (run / "history.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["epoch"] for row in rows] == ["0"] and rows[0]["val_loss"]
    assert (run / "model.keras").is_file() and (run / "curves.png").is_file()
