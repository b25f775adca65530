"""Progress reporting for long work (downloads, extraction, hashing, builds).

Library code reports through the small :class:`Progress` protocol and never
draws anything itself; :func:`bar` gives a rich progress bar on a terminal and
stays silent otherwise (or when asked to be quiet), so logs and CI output are
not filled with control characters.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


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


@contextmanager
def bar(description: str, *, unit: str = "bytes", quiet: bool = False) -> Iterator[Progress]:
    """A progress bar for one job: bytes with speed and ETA, or a plain count of items.

    Draws only when stderr is a terminal and ``quiet`` is false.
    """
    if quiet or not sys.stderr.isatty():
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
        TextColumn("{task.description}"),
        BarColumn(),
        *columns,
        console=Console(stderr=True),
        transient=False,
    ) as rich_progress:
        yield _RichTask(rich_progress, rich_progress.add_task(description, total=None))
