"""Epochs cut short: ``segtrain train --time-limit MINUTES``, and how a short epoch is shown.

``TimeLimit`` stops training once a wall-clock budget has passed. The clock starts when ``fit``
starts (so a resumed run gets a fresh budget) and is read after every training batch. Once the
budget has passed, Keras is told to stop: the epoch in progress ends early, its validation and
its end-of-epoch callbacks still run (history.csv gets its row, the best-weights checkpoint and
the backup are written), and ``fit`` returns with the model's weights as they are. The run then
writes its final model and curves as after any other run.

Every epoch's logs get two more values, with or without a budget (so history.csv keeps the
same columns when a resumed run adds or drops ``--time-limit``): ``batches``, the training
batches the epoch ran, and ``partial``, 1 if that is fewer than an epoch's (0 otherwise).
``EpochProgbar`` is Keras' progress bar, except that an epoch cut short ends at the batches it
ran ("35/77", not "77/77") and the two values are not printed.

    callback = TimeLimit(seconds=600)
    model.fit(batches, epochs=100, callbacks=[callback])
    callback.stopped  # True when the budget, not the epochs, ended training
"""

from __future__ import annotations

import time
from collections.abc import Callable

from segtrain.history import EPOCH_COLUMNS
from segtrain.runtime import import_keras

keras = import_keras()


class TimeLimit(keras.callbacks.Callback):
    """A Keras callback that stops ``fit`` after ``seconds`` of wall-clock time.

    It also counts each epoch's batches into the epoch's logs (``EPOCH_COLUMNS``).

    Args:
        seconds: the budget; 0 stops after the first batch; None never stops (batches are
            still counted).
        clock: seconds as a float, read at train start and after every batch (tests inject
            one); ``time.monotonic`` by default.
        verbose: 1 prints one line when the budget stops training.

    Example::

        model.fit(batches, epochs=100, callbacks=[TimeLimit(30 * 60)])
    """

    def __init__(
        self,
        seconds: float | None,
        clock: Callable[[], float] = time.monotonic,
        verbose: int = 0,
    ) -> None:
        super().__init__()
        self.seconds, self.clock, self.verbose = seconds, clock, verbose
        self.start = 0.0
        self.stopped = False
        self.batches = 0

    def on_train_begin(self, logs=None) -> None:
        self.start, self.stopped = self.clock(), False

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None) -> None:
        self.batches = batch + 1
        if self.seconds is None or self.stopped:
            return
        elapsed = self.clock() - self.start
        if elapsed >= self.seconds:
            self.stopped = True
            self.model.stop_training = True
            if self.verbose:
                print(f"Time limit: stopping after {elapsed / 60:.1f} min (batch {batch + 1}).")

    def on_epoch_end(self, epoch, logs=None) -> None:
        if logs is not None:
            steps = self.params.get("steps")
            logs["batches"] = self.batches
            logs["partial"] = int(steps is not None and self.batches < steps)


class EpochProgbar(keras.callbacks.ProgbarLogger):
    """Keras' progress bar (or line per epoch), ending an epoch cut short where it stopped.

    Keras ends every epoch's bar at its full length; this one ends it at the batches run, and
    leaves ``EPOCH_COLUMNS`` out of the printed values. Passed to ``fit`` in its callbacks, it
    replaces Keras' own.
    """

    def on_epoch_end(self, epoch, logs=None) -> None:
        shown = [(k, v) for k, v in (logs or {}).items() if k not in EPOCH_COLUMNS]
        if self.progbar is None:
            return
        ran = self.seen if self.target is None else min(self.seen, self.target)
        self.progbar.update(ran, shown, finalize=True)
