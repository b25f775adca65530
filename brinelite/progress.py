"""Progress reporting for long work (downloads, extraction, hashing, builds).

Library code reports through the small :class:`Progress` protocol and never
draws anything itself; :func:`bar` gives a rich progress bar on a terminal or in a
Jupyter notebook and stays silent otherwise (in pipes and log files, when asked to be
quiet, or with ``BRINELITE_DISABLE_PROGRESS_BARS=1``), so logs and CI output are not
filled with control characters. :func:`should_draw` is that decision, on its own.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from .settings import progress_bars_disabled


class Progress(Protocol):
    """Receives the size of a job once known, then increments of work done."""

    def start(self, total: int | None) -> None: ...

    def advance(self, amount: int) -> None: ...


class Silent:
    """A :class:`Progress` that reports nothing."""

    def start(self, total: int | None) -> None:
        """Ignore the total."""

    def advance(self, amount: int) -> None:
        """Ignore the increment."""


class _RichTask:
    def __init__(self, progress, task_id) -> None:
        self._progress = progress
        self._task_id = task_id

    def start(self, total: int | None) -> None:
        self._progress.update(self._task_id, total=total, completed=0)

    def advance(self, amount: int) -> None:
        self._progress.advance(self._task_id, amount)


def should_draw(quiet: bool, *, terminal: bool, notebook: bool) -> bool:
    """Whether a progress bar is drawn: on a terminal or in a notebook, unless turned off.

    Args:
        quiet: the command's ``--quiet`` (or the API's ``quiet=True``).
        terminal: whether stderr is a terminal.
        notebook: whether this runs in a Jupyter (or Colab) kernel, see :func:`in_notebook`.

    ``BRINELITE_DISABLE_PROGRESS_BARS=1`` turns bars off everywhere, as ``quiet`` does.

    Example::

        should_draw(False, terminal=False, notebook=True)  # True: the notebook shows it
    """
    if quiet or progress_bars_disabled():
        return False
    return terminal or notebook


def in_notebook() -> bool:
    """True inside a Jupyter or Colab kernel, where rich draws bars as notebook output."""
    from rich.console import Console

    return Console(stderr=True).is_jupyter


@contextmanager
def bar(description: str, *, unit: str = "bytes", quiet: bool = False) -> Iterator[Progress]:
    """A progress bar for one job: bytes with speed and ETA, or a plain count of items.

    Draws only where :func:`should_draw` says so (a terminal or a notebook, not quiet, not
    turned off by ``BRINELITE_DISABLE_PROGRESS_BARS``); yields a silent one otherwise.
    """
    if not should_draw(quiet, terminal=sys.stderr.isatty(), notebook=in_notebook()):
        yield Silent()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )
    from rich.progress import (
        Progress as RichProgress,
    )

    if unit == "bytes":
        columns = [DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn()]
    else:
        columns = [MofNCompleteColumn(), TimeRemainingColumn()]
    with RichProgress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        *columns,
        console=Console(stderr=True),
        transient=False,
    ) as rich_progress:
        yield _RichTask(rich_progress, rich_progress.add_task(description, total=None))
