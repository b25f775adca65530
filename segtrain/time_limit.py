"""Stop training when a wall-clock budget runs out: ``segtrain train --time-limit MINUTES``.

The clock starts when ``fit`` starts (so a resumed run gets a fresh budget) and is read after
every training batch. Once the budget has passed, Keras is told to stop: the epoch in progress
ends early, its validation and its end-of-epoch callbacks still run (history.csv gets its row,
the best-weights checkpoint and the backup are written), and ``fit`` returns with the model's
weights as they are. The run then writes its final model and curves as after any other run.

    callback = TimeLimit(seconds=600)
    model.fit(batches, epochs=100, callbacks=[callback])
    callback.stopped  # True when the budget, not the epochs, ended training
"""

from __future__ import annotations

import time
from collections.abc import Callable

from segtrain.runtime import import_keras

keras = import_keras()


class TimeLimit(keras.callbacks.Callback):
    """A Keras callback that stops ``fit`` after ``seconds`` of wall-clock time.

    Args:
        seconds: the budget; 0 stops after the first batch.
        clock: seconds as a float, read at train start and after every batch (tests inject
            one); ``time.monotonic`` by default.
        verbose: 1 prints one line when the budget stops training.

    Example::

        model.fit(batches, epochs=100, callbacks=[TimeLimit(30 * 60)])
    """

    def __init__(
        self, seconds: float, clock: Callable[[], float] = time.monotonic, verbose: int = 0
    ) -> None:
        super().__init__()
        self.seconds, self.clock, self.verbose = seconds, clock, verbose
        self.start = 0.0
        self.stopped = False

    def on_train_begin(self, logs=None) -> None:
        self.start, self.stopped = self.clock(), False

    def on_train_batch_end(self, batch, logs=None) -> None:
        elapsed = self.clock() - self.start
        if elapsed >= self.seconds and not self.stopped:
            self.stopped = True
            self.model.stop_training = True
            if self.verbose:
                print(f"Time limit: stopping after {elapsed / 60:.1f} min (batch {batch + 1}).")
