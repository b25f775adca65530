"""Shards for data-parallel training: disjoint, covering, equal, the same order everywhere."""

from __future__ import annotations

import numpy as np
import pytest

import brinelite
from brinelite.errors import DataError
from brinelite.shards import EpochOrder


@pytest.fixture
def membrane(membrane_src):
    brinelite.install(str(membrane_src), name="isbi/membrane")
    return brinelite.load_dataset("isbi/membrane")


def interleave(shards):
    """Undo the strided split: position k of shard i is position k * count + i of the epoch."""
    out = np.empty(sum(len(s) for s in shards), dtype=int)
    for index, shard in enumerate(shards):
        out[index :: len(shards)] = shard
    return out


@pytest.mark.parametrize("rows, count", [(30, 3), (31, 3), (7, 2), (5, 5)])
def test_shards_of_every_epoch_cover_it_disjointly_with_equal_lengths(rows, count):
    for remainder in ("pad", "drop"):
        orders = [EpochOrder(rows, True, 7, (i, count), remainder) for i in range(count)]
        whole = EpochOrder(rows, True, 7)
        for epoch in range(3):
            shards = [order.epoch(epoch) for order in orders]
            assert len({len(s) for s in shards}) == 1 == len({len(o) for o in orders})
            assert len(shards[0]) == len(orders[0])
            full = whole.epoch(epoch)
            kept = rows - rows % count if remainder == "drop" else rows
            joined = interleave(shards)
            # In the epoch's order; "pad" ends with the order's first rows read again.
            np.testing.assert_array_equal(joined[:kept], full[:kept])
            np.testing.assert_array_equal(joined[kept:], full[: len(joined) - kept])
            if remainder == "pad":
                assert set(joined) == set(range(rows))
        assert not np.array_equal(whole.epoch(0), whole.epoch(1))  # reshuffled, same everywhere


def test_sharded_to_keras_feeds_equal_batches_of_the_same_order(membrane):
    count = 4  # 30 rows: 7.5 per shard, padded to 8, batches of 3, 3 and 2
    feeds = [
        membrane.to_keras("image", "mask", batch_size=3, seed=3, shard=(i, count))
        for i in range(count)
    ]
    assert [f.steps_per_epoch() for f in feeds] == [3] * count
    for _ in range(2):
        orders = [f._order for f in feeds]
        assert set(interleave(orders)) == set(range(30)) and len(interleave(orders)) == 32
        for f in feeds:
            for _ in range(f.steps_per_epoch()):
                next(f)
    x, _ = feeds[1][0]
    first = membrane[int(feeds[1]._order[0])]
    np.testing.assert_array_equal(x[0], membrane.load_image(first.image))


def test_shard_refuses_what_could_hang_or_diverge(membrane):
    with pytest.raises(DataError, match="needs a seed"):
        membrane.to_keras("image", "mask", shard=(0, 2))
    membrane.to_keras("image", "mask", shuffle=False, shard=(0, 2))  # no shuffle: no seed needed
    for shard, words in [((2, 2), "index"), ((0, 31), "at most 30"), (("a", 2), "pair")]:
        with pytest.raises(DataError, match=words):
            membrane.to_keras("image", "mask", seed=0, shard=shard)
    with pytest.raises(DataError, match="'pad' or 'drop'"):
        membrane.to_keras("image", "mask", seed=0, shard=(0, 2), shard_remainder="wrap")


def test_dataset_shard_is_a_fixed_equal_view(membrane):
    parts = [membrane.shard(i, 4) for i in range(4)]
    assert [len(p) for p in parts] == [8] * 4
    rows = interleave([p.indices for p in parts])
    np.testing.assert_array_equal(rows, [*range(30), 0, 1])
    dropped = [membrane.shard(i, 4, remainder="drop") for i in range(4)]
    assert sorted(np.concatenate([p.indices for p in dropped])) == list(range(28))
    with pytest.raises(DataError, match="index"):
        membrane.shard(4, 4)
