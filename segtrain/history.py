"""history.csv: the values of each epoch, as Keras' ``CSVLogger`` writes them, read as numbers.

The columns are ``epoch``, the loss and each metric, train and validation (``val_``), the
learning rate, and ``EPOCH_COLUMNS`` (``batches``, ``partial``: ``segtrain.time_limit`` adds
them to every epoch's logs). Older runs named the soft dice ``dice`` (``RENAMED_COLUMNS``) and
lack ``EPOCH_COLUMNS``; ``upgraded`` gives such a file today's columns. This module turns text
into values and back; ``segtrain.run_folder`` reads and writes the file.

    values = parse(text)      # {"epoch": [0.0, 1.0], "val_loss": [0.61, 0.48], ...}
    best_epoch(values, "val_loss")  # 1: the epoch of the lowest val_loss
"""

from __future__ import annotations

import csv
import io
import math

# history.csv columns of runs before the metric was named for what it is (soft, at train size)
RENAMED_COLUMNS = {"dice": "soft_dice", "val_dice": "val_soft_dice"}
EPOCH_COLUMNS = ("batches", "partial")  # what TimeLimit adds to every epoch's logs
MISSING = "NA"  # what Keras' CSVLogger writes for a value an epoch lacks
NOT_METRICS = {"epoch", "learning_rate", "loss", *EPOCH_COLUMNS}


def rows(text: str) -> list[dict[str, str]]:
    """The rows of a history.csv's ``text``, each {column: value as written}."""
    return list(csv.DictReader(io.StringIO(text, newline="")))


def parse(text: str) -> dict[str, list[float]]:
    """A history.csv's ``text`` as {column: one number per epoch}; empty for no rows.

    A value an epoch lacks (Keras writes ``NA``) reads as NaN.

    Raises:
        ValueError, TypeError: a value that is no number, or a row shorter than the header.

    Example::

        parse("epoch,loss\\r\\n0,0.5\\r\\n")  # {"epoch": [0.0], "loss": [0.5]}
    """
    found = rows(text)
    return {
        key: [math.nan if row[key] == MISSING else float(row[key]) for row in found]
        for key in (found[0] if found else {})
    }


def upgraded(text: str) -> str | None:
    """An older history.csv's ``text`` with today's columns; None if it has them already.

    Keras' CSV log appends its values under its own sorted column names without reading the
    header, so an older history (``dice`` and ``val_dice``, no ``batches``/``partial``) would
    get a resumed run's values under the wrong names. Renamed columns are renamed, missing
    ones filled with ``NA``, in Keras' order (epoch, then sorted).

    Example::

        upgraded("epoch,dice,loss\\r\\n0,0.4,0.5\\r\\n")
        # "epoch,batches,loss,partial,soft_dice\\r\\n0,NA,0.5,NA,0.4\\r\\n"
    """
    found = rows(text)
    if not found or set(EPOCH_COLUMNS) <= set(found[0]):
        return None
    found = [{RENAMED_COLUMNS.get(k, k): v for k, v in row.items()} for row in found]
    columns = ["epoch", *sorted(set(found[0]) - {"epoch"} | set(EPOCH_COLUMNS))]
    written = io.StringIO(newline="")
    writer = csv.DictWriter(written, fieldnames=columns, restval=MISSING)
    writer.writeheader()
    writer.writerows(found)
    return written.getvalue()


def metrics(history: dict[str, list[float]]) -> list[str]:
    """The loss, then each metric the history holds for training and validation alike."""
    return ["loss", *(k for k in history if k not in NOT_METRICS and "val_" + k in history)]


# The validation figures that can pick the best epoch (``--monitor``), and which end is best.
MONITORS = {"val_soft_dice": "max", "val_loss": "min"}


def best_epoch(history: dict[str, list[float]], monitor: str) -> int | None:
    """The epoch (0-based) of a history with the best ``monitor`` value (a key of
    ``MONITORS``: the highest soft dice or the lowest loss), or None without one.

    Example::

        best_epoch({"val_loss": [0.6, 0.4, float("nan")]}, "val_loss")  # 1
    """
    values = history.get(monitor, [])
    kept = [k for k, value in enumerate(values) if not math.isnan(value)]
    pick = max if MONITORS[monitor] == "max" else min
    return pick(kept, key=values.__getitem__, default=None)


def describe(monitor: str) -> str:
    """How the best epoch is chosen, in words: "highest val_soft_dice"."""
    return f"{'highest' if MONITORS[monitor] == 'max' else 'lowest'} {monitor}"
