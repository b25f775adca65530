"""to_torch / to_pytorch: what a PyTorch user's DataLoader, sampler and loop see.

Real torch DataLoader workers (fork and spawn), real PNG files (membrane, CamVid frames).
The processing functions are module-level so spawned workers can unpickle them.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from torch._utils import ExceptionWrapper  # what DataLoader workers send their errors in
from torch.utils.data import DataLoader, DistributedSampler
from torchvision import transforms  # at collection: after TensorFlow it segfaults (TF 2.x + cu130)

import brinelite
from brinelite import malloc
from brinelite.errors import DataError
from brinelite.prepared import prepared_root
from brinelite.torch_io import IGNORE_INDEX, TORCH_MISSING, WorkerError
from tests.conftest import HANG_GUARD, REPO, SHARED_DATA, make_pairs

SIZE = 16
SEED = 3


def prepare(sample):
    """Deterministic: resize, scale, binarise the mask (HxW float32)."""
    image, mask = sample
    small = cv2.resize(image, (SIZE, SIZE)) / 255
    return small, (cv2.resize(mask, (SIZE, SIZE), interpolation=cv2.INTER_NEAREST) > 100) * 1.0


prepare.cache_key = "tests.torch_io.prepare:16"


def prepare_image(sample):
    """``prepare`` for a feed of images alone."""
    return cv2.resize(sample[0], (SIZE, SIZE)) / 255, None


prepare_image.cache_key = "tests.torch_io.prepare_image:16"


def augment(sample, rng):
    """Random: a flip and an offset drawn from the generator brinelite hands each row/epoch."""
    image, mask = sample
    if rng.random() < 0.5:
        image, mask = image[:, ::-1], mask[:, ::-1]
    return image + rng.integers(1, 1000), mask


def expected(dataset, position, epoch, seed=SEED):
    """The sample by hand: decode, prepare, augment with the (seed, epoch, row) generator."""
    row = dataset[position]
    loaded = tuple(dataset.load_image(path).astype(np.float32) for path in (row.image, row.mask))
    rng = np.random.default_rng([seed, epoch, int(dataset.indices[position])])
    image, mask = augment(prepare(loaded), rng=rng)
    return image[np.newaxis], mask[np.newaxis]


@pytest.fixture
def membrane(membrane_src):
    brinelite.install(str(membrane_src), name="isbi/membrane", quiet=True)
    return brinelite.load_dataset("isbi/membrane")


@pytest.fixture
def camvid(tmp_path):
    """Four real CamVid frames with their 11 classes (void 11)."""
    src = tmp_path / "camvid"
    for sub in ("images", "masks"):
        (src / sub).mkdir(parents=True)
    for stem in (SHARED_DATA / "camvid" / "split-train.txt").read_text().split()[:4]:
        for sub in ("images", "masks"):
            shutil.copy(SHARED_DATA / "camvid" / sub / f"{stem}.png", src / sub / f"{stem}.png")
    classes = [{"id": k, "name": f"class{k}"} for k in range(11)]
    (src / "classes.json").write_text(json.dumps({"classes": classes, "ignore": 11}))
    brinelite.build(src, "lab/camvid", "1.0.0", out=tmp_path / "camvid.tar.gz")
    brinelite.install(str(tmp_path / "camvid.tar.gz"), quiet=True)
    return brinelite.load_dataset("lab/camvid")


def feed(dataset, **kwargs):
    return dataset.to_torch("image", "mask", prepare=prepare, augment=augment, seed=SEED, **kwargs)


def run_epochs(samples, loader, epochs):
    """Every sample of each epoch, in the loader's order, after ``set_epoch``."""
    out = []
    for epoch in range(epochs):
        samples.set_epoch(epoch)
        out.append(
            [(x.numpy(), y.numpy()) for xs, ys in loader for x, y in zip(xs, ys, strict=True)]
        )
    return out


def persistent_workers(samples, batch_size, context):
    """A DataLoader with two persistent workers started by ``context`` (fork or spawn)."""
    return DataLoader(
        samples, batch_size=batch_size, num_workers=2, persistent_workers=True,
        multiprocessing_context=context,
    )  # fmt: skip


def test_fork_workers_give_the_samples_of_each_epoch(membrane):
    samples = feed(membrane)
    loader = persistent_workers(samples, 7, "fork")
    xs, ys = next(iter(loader))
    assert xs.shape == (7, 1, SIZE, SIZE) and xs.dtype == torch.float32
    assert ys.shape == (7, 1, SIZE, SIZE) and ys.dtype == torch.float32
    by_epoch = run_epochs(samples, loader, 2)
    for epoch, got in enumerate(by_epoch):
        assert len(got) == 30
        for position, (x, y) in enumerate(got):
            want_x, want_y = expected(membrane, position, epoch)
            np.testing.assert_allclose(x, want_x, rtol=1e-6)
            np.testing.assert_array_equal(y, want_y)
    assert not np.array_equal(by_epoch[0][0][0], by_epoch[1][0][0])  # epoch reached the workers
    in_process = run_epochs(samples, DataLoader(samples, batch_size=7), 2)
    for a, b in zip(sum(by_epoch, []), sum(in_process, []), strict=True):
        np.testing.assert_array_equal(a[0], b[0])  # whatever the worker count


def test_spawn_workers_unpickle_the_feed_and_follow_set_epoch(membrane):
    samples = feed(membrane)
    loader = persistent_workers(samples, 10, "spawn")
    by_epoch = run_epochs(samples, loader, 2)
    for epoch in (0, 1):
        for position in (0, 17, 29):
            want_x, want_y = expected(membrane, position, epoch)
            np.testing.assert_allclose(by_epoch[epoch][position][0], want_x, rtol=1e-6)
            np.testing.assert_array_equal(by_epoch[epoch][position][1], want_y)


def test_fork_workers_after_opencvs_pool_ran_in_the_main_process_make_samples(membrane):
    """A forked worker that set OpenCV's thread count waited forever on the pool it inherited
    (pthread_cond_destroy on the parent's threads): the suite hung there once. brinelite
    leaves OpenCV's threads alone in workers; ``timeout`` is only a hang guard."""
    before = cv2.getNumThreads()
    cv2.setNumThreads(3)  # what a 4-core machine gives
    try:
        cv2.resize(np.zeros((2048, 2048, 3), np.float32), (1000, 1000))  # the pool has run
        samples = membrane.to_torch("image", "mask", prepare=prepare, prepare_key="t:fork")
        loader = DataLoader(
            samples, batch_size=10, num_workers=2, multiprocessing_context="fork",
            timeout=HANG_GUARD,
        )  # fmt: skip
        assert sum(len(xs) for xs, _ in loader) == len(membrane)
    finally:
        cv2.setNumThreads(before)


def malloc_restored(sample):
    """The sample's image filled with 1 if this process raised glibc's malloc thresholds."""
    image, mask = prepare(sample)
    return np.full_like(image, getattr(malloc, "restored", 0)), mask


def test_workers_keep_a_samples_arrays_on_the_heap(membrane, monkeypatch):
    """At glibc's own thresholds a 256 px sample's arrays were mmapped and page-faulted in at
    every use (630 page faults a sample in a worker, 3.0 ms of its time against 2.1 ms)."""
    monkeypatch.setattr(malloc, "restored", 0, raising=False)
    monkeypatch.setattr(malloc, "restore", lambda: setattr(malloc, "restored", 1))
    samples = membrane.to_torch("image", "mask", processing_function=malloc_restored)
    loader = DataLoader(samples, batch_size=30, num_workers=1, multiprocessing_context="fork")
    xs, _ = next(iter(loader))
    assert torch.all(xs == 1)  # the worker raised them (once: it is a process of samples)
    assert samples[0][0].max() == 0  # the main process's malloc is the user's


def test_class_maps_give_int64_indices_with_void_ignored(camvid):
    samples = camvid.to_torch("image", "mask")
    loader = DataLoader(samples, batch_size=2, num_workers=2, multiprocessing_context="fork")
    got = [(x, y) for xs, ys in loader for x, y in zip(xs, ys, strict=True)]
    assert len(got) == 4
    classes = camvid.manifest.classes
    for position, (x, y) in enumerate(got):
        row = camvid[position]
        image, mask = camvid.load_image(row.image), camvid.load_image(row.mask)
        assert x.dtype == torch.float32 and x.shape == (3, *image.shape[:2])
        np.testing.assert_array_equal(x.numpy(), image.transpose(2, 0, 1))
        want = classes.to_indices(mask).astype(np.int64)
        want[want == classes.void_index] = IGNORE_INDEX
        assert y.dtype == torch.int64 and y.shape == image.shape[:2]
        np.testing.assert_array_equal(y.numpy(), want)
    every = torch.stack([y for _, y in got])
    assert (every == IGNORE_INDEX).any() and every.max() < classes.void_index
    loss = torch.nn.CrossEntropyLoss()(torch.zeros(4, 11, *every.shape[1:]), every)
    assert torch.isfinite(loss)  # void is ignored, not an out-of-range class


def test_processed_class_targets_must_be_indices(camvid):
    def ids(sample):
        image, mask = sample
        return image, mask  # the ids as stored (void 11 is fine, 200 is not a class index)

    samples = camvid.to_torch("image", "mask", processing_function=lambda s: (s[0], s[1] * 20))
    with pytest.raises(DataError, match=r"outside 0\.\.11.*ClassMap.to_indices"):
        samples[0]
    assert camvid.to_torch("image", "mask", processing_function=ids)[0][1].dtype == torch.int64


def test_same_seed_gives_to_kerass_samples(membrane):
    keras_feed = membrane.to_keras(
        "image", "mask", batch_size=30, shuffle=False, seed=SEED, prepare=prepare, augment=augment
    )
    samples = feed(membrane, cache="memory")
    for epoch in (0, 1):
        xs, ys = keras_feed[0]
        samples.set_epoch(epoch)
        for position in range(30):
            x, y = samples[position]
            np.testing.assert_array_equal(x.numpy()[0], xs[position])
            np.testing.assert_array_equal(y.numpy()[0], ys[position])
        keras_feed.on_epoch_end()


def _rows_seen(samples, loader, epoch):
    """Which dataset rows a rank read in ``epoch``, recognised by their prepared image."""
    samples.set_epoch(epoch)
    return [image.numpy().tobytes() for images in loader for image in images]


def test_two_ranks_cover_the_fold_without_overlap(membrane):
    fold, _ = membrane.create_folds((21,), seed=0)  # 21 rows: odd, so "pad" repeats one
    plain = fold.to_torch("image", prepare=prepare_image, seed=SEED)
    every_row = {plain[k].numpy().tobytes() for k in range(21)}
    assert len(every_row) == 21
    for epoch in (0, 1):
        seen = []
        for rank in (0, 1):
            sampler = DistributedSampler(plain, num_replicas=2, rank=rank, seed=SEED)
            sampler.set_epoch(epoch)
            seen.append(_rows_seen(plain, DataLoader(plain, 4, sampler=sampler), epoch))
        assert len(seen[0]) == len(seen[1]) == 11
        assert set(seen[0]) | set(seen[1]) == every_row
        assert len(set(seen[0]) & set(seen[1])) <= 1  # the one padded row
        shares = []
        for rank in (0, 1):
            share = fold.to_torch("image", prepare=prepare_image, seed=SEED, shard=(rank, 2))
            assert len(share) == 11
            shares.append(_rows_seen(share, DataLoader(share, 4, shuffle=True), epoch))
        assert set(shares[0]) | set(shares[1]) == every_row
        assert len(set(shares[0]) & set(shares[1])) <= 1
    drop = fold.to_torch(
        "image", prepare=prepare_image, seed=SEED, shard=(1, 2), shard_remainder="drop"
    )
    assert len(drop) == 10


def test_a_corrupt_image_in_a_worker_is_one_line_naming_the_file(membrane):
    (membrane.path / membrane[4].image).write_bytes(b"not a png at all")
    samples = membrane.to_torch("image", "mask", prepare=prepare, seed=SEED)
    loader = DataLoader(samples, batch_size=2, num_workers=2, multiprocessing_context="fork")
    with pytest.raises(WorkerError) as caught:
        list(loader)
    message = str(caught.value)
    assert isinstance(caught.value, DataError) and isinstance(
        caught.value, brinelite.BrineliteError
    )
    assert message.startswith("Cannot load row 4 (images/04.png, masks/04.png)")
    assert "\n" not in message and "Traceback" not in message
    with pytest.raises(DataError, match=r"Cannot load row 4") as direct:
        samples[4]  # in the main process it is the original error
    assert type(direct.value) is DataError


def test_a_file_name_holding_the_marker_cannot_rewrite_a_workers_error(tmp_path, monkeypatch):
    """Before: the main process kept the text after the last "brinelite.torch_io.WorkerError: ",
    so a row named to hold it replaced the message the user saw."""
    marker = "brinelite.torch_io.WorkerError: "
    src = make_pairs(tmp_path / "pairs", count=2)
    stem = f"x {marker}all is well, look elsewhere"
    for sub in ("images", "masks"):
        (src / sub / "001.png").rename(src / sub / f"{stem}.png")
    brinelite.install(str(src), name="gen/hostile@1.0.0", quiet=True)
    dataset = brinelite.load_dataset("gen/hostile")
    (dataset.path / dataset[1].image).write_bytes(b"not a png at all")
    samples = dataset.to_torch("image", "mask", prepare=prepare)
    monkeypatch.setattr("brinelite.torch_io._in_worker", lambda: True)
    try:  # what a DataLoader worker does: wrap the error, reraised in the main process
        samples[1]
    except WorkerError:
        wrapped = ExceptionWrapper(where="in DataLoader worker process 0")
    with pytest.raises(WorkerError) as caught:
        wrapped.reraise()
    message = str(caught.value)
    assert message.startswith(f"Cannot load row 1 (images/{stem}.png, masks/{stem}.png)"), message
    assert "\n" not in message and "Traceback" not in message


COUNTING = "BRINELITE_TEST_PREPARE_LOG"


def counting_prepare(sample):
    """``prepare``, appending one line per call to a log shared by every process."""
    with open(os.environ[COUNTING], "a") as log:
        log.write("x\n")
    return prepare(sample)


counting_prepare.cache_key = prepare.cache_key


def _read_all(samples, order):
    return [samples[int(k)][0].numpy().sum() for k in order]


def test_processes_filling_one_disk_cache_at_once_leave_it_valid(membrane, tmp_path, monkeypatch):
    log = tmp_path / "calls.log"
    monkeypatch.setenv(COUNTING, str(log))
    samples = membrane.to_torch("image", "mask", prepare=counting_prepare, cache="disk")
    context = multiprocessing.get_context("fork")
    with context.Pool(2) as pool:  # the same rows from both ends at once
        pool.starmap(_read_all, [(samples, range(30)), (samples, range(29, -1, -1))])
    calls = len(log.read_text().splitlines())
    assert 30 <= calls <= 60
    (published,) = prepared_root().iterdir()
    assert {p.name for p in published.iterdir()} == {"x.npy", "y.npy", "key.json", "arrays.json"}
    assert not list((published.parent.parent / "tmp").iterdir())  # row files gathered, removed
    x = np.load(published / "x.npy")
    for position in (0, 13, 29):
        row = membrane[position]
        loaded = [membrane.load_image(p).astype(np.float32) for p in (row.image, row.mask)]
        np.testing.assert_array_equal(x[position], prepare(loaded)[0])
    again = membrane.to_torch("image", "mask", prepare=counting_prepare, cache="disk")
    loader = DataLoader(again, batch_size=10, num_workers=2, multiprocessing_context="fork")
    assert sum(len(xs) for xs, _ in loader) == 30
    assert len(log.read_text().splitlines()) == calls  # served from the published cache


def test_workers_fill_the_disk_cache_once(membrane, tmp_path, monkeypatch):
    log = tmp_path / "calls.log"
    monkeypatch.setenv(COUNTING, str(log))
    samples = membrane.to_torch("image", "mask", prepare=counting_prepare, seed=SEED)
    loader = DataLoader(
        samples, batch_size=4, shuffle=True, num_workers=2, persistent_workers=True,
        multiprocessing_context="fork",
    )  # fmt: skip
    for epoch in range(3):
        samples.set_epoch(epoch)
        assert sum(len(xs) for xs, _ in loader) == 30
    assert len(log.read_text().splitlines()) == 30  # each row prepared once, by one worker
    assert len(list(prepared_root().iterdir())) == 1


def test_the_feed_pickles_as_rows_and_settings(membrane):
    samples = membrane.to_torch("image", "mask", prepare=prepare, cache="memory", seed=SEED)
    before = len(pickle.dumps(samples))
    for position in range(30):
        samples[position]
    store = samples.loader.preparation.store
    assert store.nbytes == 30 * SIZE * SIZE * (4 + 8)  # float32 images, float64 masks
    after = pickle.dumps(samples)
    assert len(after) == before < store.nbytes // 4
    copy = pickle.loads(after)
    assert copy.loader.preparation.store.nbytes == 0  # a memory cache is per process
    np.testing.assert_array_equal(copy[5][0], samples[5][0])


def test_to_pytorch_as_brines_getting_started(tmp_path, pairs_src):
    lines = "".join(f"pairs/images/00{i}.png,{'cat' if i % 2 else 'dog'}\n" for i in range(8))
    (tmp_path / "data.csv").write_text("image,label\n" + lines)
    columns = [{"name": "image", "type": "image"}, {"name": "label", "type": "category"}]
    (tmp_path / "config.json").write_text(json.dumps({"path": "data.csv", "columns": columns}))
    brinelite.build(tmp_path / "config.json", "gen/labels", "1.0.0", out=tmp_path / "l.tar.gz")
    brinelite.install(str(tmp_path / "l.tar.gz"), quiet=True)
    train = brinelite.load_dataset("gen/labels")

    transform = transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))]
    )
    rows = train.to_pytorch(transform=transform, transform_columns="images")
    assert isinstance(rows, torch.utils.data.Dataset) and len(rows) == 8
    loader = DataLoader(rows, batch_size=4, shuffle=True, num_workers=2)
    batches = list(loader)
    assert [b.image.shape for b in batches] == [(4, 3, 48, 64)] * 2
    assert sorted(torch.cat([b.label for b in batches]).tolist()) == [0, 0, 0, 0, 1, 1, 1, 1]
    first = rows[0]
    pixels = train.load_image(train[0].image)
    np.testing.assert_allclose(
        first.image.numpy(), pixels.transpose(2, 0, 1) / 127.5 - 1, atol=1e-6
    )
    plain = train.to_pytorch()[1]
    assert plain.image.size == (64, 48) and plain.label == 1  # a PIL image, a category index
    assert train.to_pytorch(transform=lambda row: row.image)[0] == "pairs/images/000.png"
    with pytest.raises(DataError, match="needs a transform"):
        train.to_pytorch(transform_columns="images")


MISSING_TORCH = """
import sys
sys.modules["torch"] = None  # import torch now raises ImportError
import brinelite
try:
    brinelite.load_dataset(sys.argv[1]).to_torch("image", "mask")
except brinelite.BrineliteError as exc:
    print(exc)
"""


def test_missing_torch_is_one_line(membrane):
    result = subprocess.run(
        [sys.executable, "-c", MISSING_TORCH, str(membrane.path)],
        capture_output=True, text=True, timeout=HANG_GUARD, check=True,
    )  # fmt: skip
    assert result.stdout.strip() == TORCH_MISSING
    assert TORCH_MISSING.endswith("pip install 'brinelite[torch]'")


def test_the_pytorch_recipe_runs_as_written(membrane_src, tmp_path):
    """docs/pytorch.md's code block, at toy sizes, in a fresh process (as a user runs it)."""
    text = (REPO / "docs" / "pytorch.md").read_text()
    recipe = text.split("```python\n", 1)[1].split("```", 1)[0]
    sizes = "SIZE, BATCH, EPOCHS, WORKERS = 128, 4, 20, 2"
    assert sizes in recipe
    script = tmp_path / "recipe.py"
    script.write_text(recipe.replace(sizes, "SIZE, BATCH, EPOCHS, WORKERS = 32, 8, 2, 2"))
    brinelite.install(str(membrane_src), name="demo/membrane", quiet=True)
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=HANG_GUARD
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["epoch 0", "epoch 1"]
    assert all(np.isfinite(float(line.rsplit(" ", 1)[1])) for line in lines)
    assert len(list(prepared_root().iterdir())) == 2  # train and validation, published
