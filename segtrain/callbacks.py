"""The callbacks ``segtrain train`` fits with, writing into the run folder; they compose.

The original Carvana/chairs workflow's callbacks (early stopping, learning-rate reduction, the
best-weights checkpoint) plus a CSV log, TensorBoard logs, a backup for ``--resume``, the
``--time-limit`` clock (``segtrain.time_limit``) and the progress bar. ``make_callbacks``
assembles them in the order they must run at each epoch's end; the learning-rate schedule
(``schedule_callbacks``) and what records the epoch (``record_callbacks``) can be taken alone.
Keras, the time limit and the budget decay are imported when a callback is made, not here.

    model.fit(batches, epochs=100, callbacks=make_callbacks("runs/mine"))
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from segtrain import runtime
from segtrain.history import MONITORS, best_epoch
from segtrain.run_folder import BACKUP, BEST_WEIGHTS, HISTORY, LOGS, RunFolder

if TYPE_CHECKING:
    import keras


def make_callbacks(
    run_dir: str | Path,
    resume: bool = False,
    time_limit: float | None = None,
    schedule: str = "plateau",
    lr: float | None = None,
    monitor: str = "val_loss",
) -> list[keras.callbacks.Callback]:
    """Carvana's callbacks, writing into the run folder ``run_dir``, plus logs and a backup.

    With ``time_limit`` (minutes) a ``segtrain.time_limit.TimeLimit`` stops training once that
    much wall-clock time has passed (checked after every batch); with or without one, it
    records each epoch's batches (history.csv's ``batches`` and ``partial``) and the progress
    bar ends an epoch cut short where it stopped. ``schedule`` picks the learning-rate
    callbacks (``schedule_callbacks``); the checkpoint and logs are ``record_callbacks``'.

    Args:
        run_dir: the run folder (created if missing).
        resume: append to its logs, and keep best weights better than its history's.
        time_limit: the wall-clock budget in minutes, or None.
        schedule: "plateau" or "budget" (see ``schedule_callbacks``).
        lr: the starting learning rate (needed by "budget").
        monitor: the validation figure that picks the best weights and, for "plateau", stops
            early and cuts the rate (``segtrain.history.MONITORS``).

    Example::

        model.fit(batches, epochs=100, callbacks=make_callbacks("runs/mine"))
    """
    keras = runtime.import_keras()
    from segtrain.time_limit import EpochProgbar, TimeLimit

    folder = RunFolder(Path(run_dir))
    folder.path.mkdir(parents=True, exist_ok=True)
    return [
        # First: it adds the epoch's batch count to the logs the others (the CSV log) read.
        TimeLimit(None if time_limit is None else 60 * time_limit, verbose=1),
        # The previous epoch's backup is kept too: a process killed while saving (a peer lost,
        # the machine preempted) leaves a torn file, and resuming falls back on the other.
        keras.callbacks.BackupAndRestore(
            folder.path / BACKUP, double_checkpoint=True, delete_checkpoint=False
        ),
        *schedule_callbacks(schedule, time_limit, lr, monitor),  # before the CSV log (rate)
        *record_callbacks(folder, resume, monitor),
        # Last: an epoch's line is printed once its row, checkpoint and backup are written. It
        # is Keras' bar, except that an epoch cut short ends where it stopped.
        EpochProgbar(),
    ]


def schedule_callbacks(
    schedule: str,
    time_limit: float | None = None,
    lr: float | None = None,
    monitor: str = "val_loss",
) -> list[keras.callbacks.Callback]:
    """The learning-rate schedule ``--lr-schedule`` names, and what ends a run early.

    "plateau" is the Carvana workflow's EarlyStopping and ReduceLROnPlateau, watching
    ``monitor`` (``segtrain.history.MONITORS``); "budget" (which
    needs ``time_limit`` in minutes and ``lr``) replaces both with a
    ``segtrain.budget_decay.BudgetDecay`` from ``lr`` to 0 over the time limit (the budget,
    not a validation stall, ends the run).

    Example::

        schedule_callbacks("budget", time_limit=10, lr=1e-3)  # [BudgetDecay]
    """
    if schedule == "budget":
        if time_limit is None or lr is None:
            raise ValueError('schedule "budget" decays from lr over time_limit; pass both')
        from segtrain.budget_decay import BudgetDecay

        # The budget ends the run: early stopping would end it at a noisy validation stall.
        return [BudgetDecay(60 * time_limit, lr=lr)]
    keras = runtime.import_keras()
    watch = {"monitor": monitor, "mode": MONITORS[monitor], "min_delta": 1e-4, "verbose": 1}
    return [
        keras.callbacks.EarlyStopping(patience=8, **watch),
        keras.callbacks.ReduceLROnPlateau(factor=0.1, patience=4, **watch),
    ]


def record_callbacks(
    folder: RunFolder, resume: bool = False, monitor: str = "val_loss"
) -> list[keras.callbacks.Callback]:
    """What records each epoch in ``folder``: the best-weights checkpoint (by ``monitor``),
    history.csv and, where they can be written, TensorBoard logs.

    On resume, the CSV log is appended to and the checkpoint only replaces the best weights
    with better ones than history.csv already records. TensorBoard logs need the tensorboard
    package and the TensorFlow backend (Keras writes them with ``tf.summary``); without either
    they are skipped with a warning rather than failing the run.

    Example::

        record_callbacks(RunFolder(Path("runs/mine")))  # checkpoint, CSV log, TensorBoard
    """
    keras = runtime.import_keras()
    history = folder.history() if resume else {}
    best = best_epoch(history, monitor)
    callbacks = [
        keras.callbacks.ModelCheckpoint(
            folder.path / BEST_WEIGHTS,
            monitor=monitor,
            mode=MONITORS[monitor],
            save_best_only=True,
            save_weights_only=True,
            initial_value_threshold=None if best is None else history[monitor][best],
        ),
        keras.callbacks.CSVLogger(folder.path / HISTORY, append=resume),
    ]
    if runtime.backend() != "tensorflow":  # Keras writes TensorBoard logs with TensorFlow
        warnings.warn(
            f"no TensorBoard logs under the {runtime.backend()} backend (Keras writes them with "
            "TensorFlow); history.csv and curves.png hold the curves",
            stacklevel=3,
        )
    elif importlib.util.find_spec("tensorboard") is None:
        warnings.warn("no TensorBoard logs: the tensorboard package is not installed", stacklevel=3)
    else:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=folder.path / LOGS))
    return callbacks
