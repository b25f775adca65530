"""Ctrl-C at an epoch's end waits until the epoch is written: ``EpochEndShield``.

At each epoch's end the callbacks write history.csv's row, the best-weights checkpoint and the
backup for ``--resume``. An interrupt between two of them would leave a run whose backup is an
epoch ahead of its history. The shield holds Ctrl-C from the first of those callbacks to the
last, then delivers it: ``fit`` stops at a finished, fully written epoch.

    shield = EpochEndShield()
    with shield:
        model.fit(batches, epochs=100, callbacks=shield.around(callbacks))
"""

from __future__ import annotations

import signal
import threading
from typing import TYPE_CHECKING, Any

from segtrain import runtime

if TYPE_CHECKING:
    import keras


class EpochEndShield:
    """Ctrl-C while an epoch's row, checkpoint and backup are written waits until they are.

    Used as a context around ``fit`` (in the main thread; elsewhere Python delivers no
    signal), with ``begin`` and ``end`` called first and last at each epoch's end (``around``
    puts them there).

    Example::

        shield = EpochEndShield()
        with shield:
            model.fit(batches, epochs=10, callbacks=shield.around(make_callbacks("runs/a")))
    """

    def __init__(self) -> None:
        self.shielded = self.pending = False
        self.previous: Any = None

    def __enter__(self) -> EpochEndShield:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._interrupt)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)

    def _interrupt(self, signum: int, frame: Any) -> None:
        if not self.shielded:
            raise KeyboardInterrupt
        self.pending = True

    def begin(self) -> None:
        """An epoch's end starts: hold Ctrl-C."""
        self.shielded = True

    def end(self) -> None:
        """The epoch is written: a Ctrl-C held meanwhile interrupts now."""
        self.shielded = False
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt

    def around(self, callbacks: list[keras.callbacks.Callback]) -> list[keras.callbacks.Callback]:
        """``callbacks`` with this shield's ``begin`` first and ``end`` last at an epoch's end."""
        keras = runtime.import_keras()
        return [
            keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: self.begin()),
            *callbacks,
            keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: self.end()),
        ]
