"""Anneal the learning rate over a wall-clock budget: ``segtrain train --time-limit MINUTES``.

A run with a known budget does better decaying its learning rate steadily to zero by the end of
that budget than waiting for the validation loss to plateau (Li, Yumer & Ramanan, "Budgeted
training: rethinking deep neural network training under resource constraints", ICLR 2020, found
linear decay to zero at the budget's end a robust choice across budgets). On a short CPU budget
a plateau detector mostly reacts to noise: the original Carvana/chairs workflow's
``ReduceLROnPlateau`` (patience 4) cut the rate tenfold after 6 of 34 epochs on CamVid, and the
run crawled for the rest.

The clock starts when ``fit`` starts, as ``TimeLimit``'s does (a resumed run gets a fresh
budget and decays again from ``lr``), and the rate is set before every training batch.

    model.fit(batches, epochs=1000, callbacks=[BudgetDecay(600, lr=1e-3), TimeLimit(600)])
"""

from __future__ import annotations

import time
from collections.abc import Callable

from segtrain.runtime import import_keras

keras = import_keras()


class BudgetDecay(keras.callbacks.Callback):
    """A Keras callback that lowers the learning rate linearly from ``lr`` to 0 over ``seconds``.

    Args:
        seconds: the budget, as given to ``TimeLimit``; must be > 0.
        lr: the rate at the start of the budget (the run's ``--lr``).
        clock: seconds as a float, read at train start and before every batch (tests inject
            one); ``time.monotonic`` by default.

    Example::

        model.fit(batches, epochs=100, callbacks=[BudgetDecay(30 * 60, lr=1e-3)])
    """

    def __init__(
        self, seconds: float, lr: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        if seconds <= 0:
            raise ValueError(f"BudgetDecay needs a budget > 0 seconds, not {seconds}")
        self.seconds, self.lr, self.clock = seconds, lr, clock
        self.start = 0.0

    def on_train_begin(self, logs=None) -> None:
        self.start = self.clock()

    def on_train_batch_begin(self, batch, logs=None) -> None:
        used = min(1.0, (self.clock() - self.start) / self.seconds)
        self.model.optimizer.learning_rate = self.lr * (1.0 - used)

    def on_epoch_end(self, epoch, logs=None) -> None:
        if logs is not None:  # history.csv's learning_rate column, as ReduceLROnPlateau logs it
            rate = self.model.optimizer.learning_rate
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(rate))
