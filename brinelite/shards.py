"""Which rows one process reads in each epoch: the shuffled order, and one shard of it.

Every process of a data-parallel run draws the same per-epoch permutation (from the same
seed) and keeps every ``count``-th position of it, starting at its ``index``. The shards of
one epoch are then disjoint and together cover the epoch; the global batch ``k`` (batch ``k``
of every process) holds the same rows as batch ``k`` of one process reading with a batch
``count`` times larger. All shards have the same length, so every process runs the same
number of steps and collective operations never wait for a process that has run out:
the ``len % count`` rows left over are either padded (the order's first rows read again,
as PyTorch's ``DistributedSampler`` does) or dropped (different rows each epoch when
shuffling, so none is left out for good).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from .errors import DataError

Remainder = Literal["pad", "drop"]
REMAINDERS = ("pad", "drop")


def check_shard(shard: tuple[int, int], rows: int, remainder: str) -> tuple[int, int]:
    """``(index, count)`` as ints, or a :class:`DataError` saying what is wrong with it."""
    try:
        index, count = (int(part) for part in shard)
    except (TypeError, ValueError):
        raise DataError(
            f"shard must be a pair (index, count) of whole numbers, got {shard!r}."
        ) from None
    if not 0 <= index < count:
        raise DataError(f"shard={shard!r}: the index must be in 0..count-1, got {index}.")
    if remainder not in REMAINDERS:
        raise DataError(f"shard_remainder must be 'pad' or 'drop', got {remainder!r}.")
    if count > rows or (remainder == "drop" and rows // count == 0):
        raise DataError(f"Cannot split {rows} rows into {count} shards: use at most {rows}.")
    return index, count


def shard_length(rows: int, count: int, remainder: str) -> int:
    """Rows in each of ``count`` shards of ``rows`` rows (the same for every shard)."""
    return -(-rows // count) if remainder == "pad" else rows // count


def shard_positions(order: np.ndarray, index: int, count: int, remainder: str) -> np.ndarray:
    """Shard ``index`` of ``count`` of ``order``: every ``count``-th position, equal lengths."""
    total = shard_length(len(order), count, remainder) * count
    evened = np.resize(order, total)  # "pad" repeats the order from its start; "drop" cuts it
    return evened[index::count]


class EpochOrder:
    """The positions of a dataset view that one process reads in each epoch.

    Args:
        rows: rows in the view.
        shuffle: draw a new permutation each epoch (from ``seed`` and the epoch number).
        seed: the entropy of the shuffle; every process of a sharded run must pass the same.
        shard: ``(index, count)``, or None to read every row.
        remainder: ``"pad"`` or ``"drop"`` (see the module's docstring).
    """

    def __init__(
        self,
        rows: int,
        shuffle: bool,
        seed: int | None,
        shard: tuple[int, int] | None = None,
        remainder: str = "pad",
    ) -> None:
        if shard is not None and shuffle and seed is None:
            raise DataError(
                "shard needs a seed when shuffling: every process must draw the same order; "
                "pass the same seed=... to every process."
            )
        self.rows = rows
        self.shuffle = shuffle
        self.seed = np.random.SeedSequence(seed).entropy
        self.shard = None if shard is None else check_shard(shard, rows, remainder)
        self.remainder = remainder

    def __len__(self) -> int:
        if self.shard is None:
            return self.rows
        return shard_length(self.rows, self.shard[1], self.remainder)

    def epoch(self, epoch: int) -> np.ndarray:
        """The positions this process reads in epoch ``epoch`` (0-based), in reading order."""
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.rows)
        else:
            order = np.arange(self.rows)
        if self.shard is None:
            return order
        return shard_positions(order, *self.shard, self.remainder)
