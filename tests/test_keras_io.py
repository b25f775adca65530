"""to_keras / to_tf_dataset: what Keras 3's fit and a notebook user see."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import HANG_GUARD

import brinelite
from brinelite.errors import DataError

RNG = np.random.default_rng(0)


def seed_process(sample, size=256, augment=True, rng=RNG):
    """The seed notebook's processing, written the way its users wrote it (cv2 on arrays)."""
    image, mask = sample
    image, mask = image[:, :, :3], mask[:, :, :3]
    if mask.shape[2] == 3:
        mask = cv2.cvtColor(mask, cv2.COLOR_BGR2GRAY)
    mask = np.where(np.squeeze(mask) < 100, 0, 255).astype(np.float32)
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    image = cv2.resize(image, (size, size))
    mask = cv2.resize(mask, (size, size))
    if augment and rng.random() < 0.5:
        image, mask = image[:, ::-1], mask[:, ::-1]
    mask = np.where(mask < 100, 0, 255)
    return image / 255.0, (mask / 255.0)[:, :, np.newaxis]


@pytest.fixture
def membrane(membrane_src):
    brinelite.install(str(membrane_src), name="isbi/membrane")
    return brinelite.load_dataset("isbi/membrane")


@pytest.fixture
def kvasir(kvasir_src):
    brinelite.install(str(kvasir_src), name="simula/kvasir-seg")
    return brinelite.load_dataset("simula/kvasir-seg")


def test_seed_processing_gives_the_seed_shapes(kvasir):
    validation, train = kvasir.create_folds((4,), seed=0)
    gen = train.to_keras(
        "image", "mask", batch_size=1, shuffle=True, processing_function=seed_process
    )
    x, y = next(gen)
    assert x.shape == (1, 256, 256, 3) and y.shape == (1, 256, 256, 1)
    assert x.dtype == np.float32 and y.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0 and x.max() > 0.2
    assert set(np.unique(y)) <= {0.0, 1.0} and y.max() == 1.0
    assert gen.steps_per_epoch() == 8
    val_gen = validation.to_keras(
        "image",
        "mask",
        batch_size=1,
        shuffle=False,
        processing_function=lambda s: seed_process(s, augment=False),
    )
    assert val_gen.steps_per_epoch() == 4


def test_iterator_runs_forever_and_reshuffles(membrane):
    gen = membrane.to_keras("image", "mask", batch_size=7, seed=5)
    assert gen.steps_per_epoch() == 5  # 30 rows: four of 7 and a short one of 2
    sizes = [len(next(gen)[0]) for _ in range(10)]
    assert sizes == [7, 7, 7, 7, 2] * 2
    orders = []
    for _ in range(2):
        order = np.concatenate([gen._order])
        orders.append(order)
        for _ in range(5):
            next(gen)
    assert sorted(orders[0]) == list(range(30)) and not np.array_equal(orders[0], orders[1])
    x, y = membrane.to_keras("image", "mask", batch_size=30, shuffle=False)[0]
    assert x.shape == (30, 512, 512, 1) and x.max() == 255.0


def test_same_seed_same_batches(membrane):
    a = membrane.to_keras("image", "mask", batch_size=4, seed=11)
    b = membrane.to_keras("image", "mask", batch_size=4, seed=11)
    for _ in range(9):
        xa, _ = next(a)
        xb, _ = next(b)
        assert np.array_equal(xa, xb)


def test_different_shapes_without_processing_is_a_clear_error(kvasir):
    gen = kvasir.to_keras("image", "mask", batch_size=4, shuffle=False)
    with pytest.raises(DataError, match="processing_function"):
        gen[0]


def test_processing_errors_name_the_row_and_file(membrane):
    def broken(sample):
        raise ValueError("boom")

    with pytest.raises(DataError, match=r"row 0 \(images/00.png, masks/00.png\).*boom"):
        membrane.to_keras("image", "mask", batch_size=1, shuffle=False, processing_function=broken)[
            0
        ]
    with pytest.raises(DataError, match="must return a pair"):
        membrane.to_keras("image", "mask", processing_function=lambda s: s[0])[0]
    with pytest.raises(DataError, match="no column 'label'"):
        membrane.to_keras("image", "label")
    empty, _ = membrane.create_folds((0,))
    with pytest.raises(DataError, match="no rows"):
        empty.to_keras("image", "mask")


def test_fit_trains_a_tiny_model_from_to_keras(membrane):
    import keras

    validation, train = membrane.create_folds((10,), seed=0)

    def process(sample):
        return seed_process(sample, size=32, augment=False)

    train_gen = train.to_keras("image", "mask", batch_size=4, processing_function=process, seed=1)
    val_gen = validation.to_keras(
        "image", "mask", batch_size=4, shuffle=False, processing_function=process
    )
    inputs = keras.Input((32, 32, 3))
    hidden = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid")(hidden)
    model = keras.Model(inputs, outputs)
    model.compile("adam", "binary_crossentropy")
    history = model.fit(train_gen, validation_data=val_gen, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["val_loss"]).all()
    assert train_gen.epoch >= 2  # Keras called on_epoch_end: a fresh order per epoch
    predictions = model.predict(val_gen, verbose=0)
    assert predictions.shape == (10, 32, 32, 1)


def test_to_tf_dataset_yields_the_same_batches(membrane):
    kwargs = dict(
        batch_size=8,
        shuffle=False,
        processing_function=lambda s: seed_process(s, size=16, augment=False),
    )
    tf_batches = list(membrane.to_tf_dataset("image", "mask", **kwargs))
    keras_batches = membrane.to_keras("image", "mask", **kwargs)
    assert len(tf_batches) == 4 and tf_batches[-1][0].shape == (6, 16, 16, 3)
    assert np.allclose(tf_batches[1][1].numpy(), keras_batches[1][1])


def test_image_cache_returns_identical_batches(membrane):
    plain = membrane.to_keras("image", "mask", batch_size=5, shuffle=False)
    cached = membrane.to_keras("image", "mask", batch_size=5, shuffle=False, cache_images=True)
    for _ in range(2):
        assert np.array_equal(cached[2][0], plain[2][0])
    assert len(cached.loader.image_cache) == 10


def test_unprocessed_batches_are_float32_pixels(membrane):
    x, y = membrane.to_keras("image", "mask", batch_size=3, shuffle=False)[1]
    assert x.dtype == np.float32 and y.dtype == np.float32 and x.shape == (3, 512, 512, 1)
    row = membrane[4]
    np.testing.assert_array_equal(x[1], membrane.load_image(row.image))
    np.testing.assert_array_equal(y[1], membrane.load_image(row.mask))


def test_processing_cannot_alter_cached_pixels(membrane):
    def scribble(sample):
        image, mask = sample
        image[:] = -1  # edits the array it was given, in place
        return image, mask

    cached = membrane.to_keras(
        "image",
        "mask",
        batch_size=2,
        shuffle=False,
        processing_function=scribble,
        cache_images=True,
    )
    assert (cached[0][0] == -1).all()
    cached[0]
    pixels = cached.loader.image_cache[membrane[0].image]
    np.testing.assert_array_equal(pixels, membrane.load_image(membrane[0].image))


def test_category_targets_become_label_indices(tmp_path, pairs_src):
    import json

    lines = "".join(f"pairs/images/00{i}.png,{'cat' if i % 2 else 'dog'}\n" for i in range(6))
    (tmp_path / "data.csv").write_text("image,label\n" + lines)
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "path": "data.csv",
                "columns": [
                    {"name": "image", "type": "image"},
                    {"name": "label", "type": "category"},
                ],
            }
        )
    )
    brinelite.build(tmp_path / "config.json", "gen/labels", "1.0.0", out=tmp_path / "l.tar.gz")
    brinelite.install(str(tmp_path / "l.tar.gz"))
    ds = brinelite.load_dataset("gen/labels")
    x, y = ds.to_keras("image", "label", batch_size=6, shuffle=False)[0]
    assert x.shape == (6, 48, 64, 3)
    assert y.tolist() == [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]


MALLOC_PROBE = """
import ctypes, sys
import numpy as np
import tensorflow as tf
import brinelite

class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Mallinfo2

def placement(count=16, nbytes=8 << 20):
    # Where glibc puts 16 new 8 MB arrays: in the arena, or each in a block mmapped for it
    # (hblks counts those blocks; other threads may move it by one or two meanwhile).
    before = libc.mallinfo2().hblks
    arrays = [np.ones(nbytes, np.uint8) for _ in range(count)]
    mmapped = libc.mallinfo2().hblks - before
    return "mmap" if mmapped >= 3 * count // 4 else "heap" if mmapped <= count // 4 else "mixed"

generator = tf.data.Dataset.from_generator(
    lambda: iter([1]), output_signature=tf.TensorSpec((), tf.int32))
list(generator)  # TensorFlow pins the mmap threshold at 128 KB here
print(placement())
brinelite.load_dataset(sys.argv[1]).to_keras("image", "mask", batch_size=2)[0]
print(placement())
"""


@pytest.mark.parametrize("opt_out, placements", [("", ["mmap", "heap"]), ("1", ["mmap", "mmap"])])
def test_batches_undo_tensorflows_malloc_thresholds(membrane, opt_out, placements):
    """Starting a tf.data generator (as fit does with a PyDataset) makes glibc mmap every array
    over 128 KB; the next brinelite batch puts large arrays back on the heap, unless
    BRINELITE_NO_MALLOC_FIX opts out (then the batch leaves TensorFlow's setting alone)."""
    import os
    import subprocess
    import sys

    probe = subprocess.run(
        [sys.executable, "-c", MALLOC_PROBE, str(membrane.path)],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        env={**os.environ, "BRINELITE_NO_MALLOC_FIX": opt_out},
    )
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert probe.stdout.split() == placements


def tiny_model(size):
    import keras

    inputs = keras.Input((size, size, 3))
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs)
    model = keras.Model(inputs, outputs)
    model.compile("sgd", "binary_crossentropy")
    return model


def _break_row(membrane, how):
    """A feed of 1-row batches whose row 4 fails (Keras reads batches 0 and 1 itself first,
    outside tf.data, so the failure must come later to cross TensorFlow's boundary)."""
    cursed = None
    if how == "undecodable":
        (membrane.path / membrane[4].image).write_bytes(b"not a png at all")
    else:
        cursed = membrane.load_image(membrane[4].image).astype(np.float32)

    def process(sample):
        if how == "processing" and np.array_equal(sample[0], cursed):
            raise ValueError("row four is cursed")
        return seed_process(sample, size=8, augment=False)

    return membrane.to_keras(
        "image", "mask", batch_size=1, shuffle=False, processing_function=process
    )


@pytest.mark.parametrize(
    "how, message",
    [
        ("processing", r"processing_function failed on row 4 .*ValueError: row four is cursed"),
        ("undecodable", r"Cannot load row 4 \(images/04.png, masks/04.png\)"),
    ],
)
def test_fit_raises_the_original_error_inside_original_errors(membrane, how, message):
    model = tiny_model(8)
    with pytest.raises(DataError, match=message) as caught, brinelite.original_errors():
        model.fit(_break_row(membrane, how), epochs=1, verbose=0)
    assert type(caught.value) is DataError
    # Without the context, TensorFlow's own error comes out, quoting the original's text.
    with pytest.raises(Exception) as wrapped:
        model.fit(_break_row(membrane, how), epochs=1, verbose=0)
    assert not isinstance(wrapped.value, brinelite.BrineliteError)
    assert "DataError" in str(wrapped.value)


def test_original_errors_matches_each_wrapper_to_its_own_error():
    """Two fits failing in two threads: each gets the error its framework error quotes."""
    import threading

    from brinelite.keras_io import _FAILURES

    _FAILURES.record(DataError("recorded while nobody listens"))
    results = {}
    barrier = threading.Barrier(2)

    def run(name):
        try:
            with brinelite.original_errors():
                error = DataError(f"batch of {name} failed")
                _FAILURES.record(error)
                barrier.wait()  # both recorded before either unwraps
                raise RuntimeError(f"tf says: Traceback ... DataError: batch of {name} failed")
        except Exception as exc:
            results[name] = exc

    threads = [threading.Thread(target=run, args=(n,)) for n in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {n: (type(e), str(e)) for n, e in results.items()} == {
        "a": (DataError, "batch of a failed"),
        "b": (DataError, "batch of b failed"),
    }
    # A framework error quoting no kept error passes unchanged; nothing is kept between blocks.
    with pytest.raises(RuntimeError, match="unrelated"), brinelite.original_errors():
        _FAILURES.record(DataError("a batch failed"))
        raise RuntimeError("something unrelated")
    with pytest.raises(RuntimeError), brinelite.original_errors():
        raise RuntimeError("DataError: recorded while nobody listens")


def test_missing_keras_is_one_line(membrane, monkeypatch):
    import sys

    from brinelite import keras_io

    keras_io._pydataset_class.cache_clear()
    monkeypatch.setitem(sys.modules, "keras", None)  # import keras now raises ImportError
    try:
        with pytest.raises(brinelite.BrineliteError) as caught:
            membrane.to_keras("image", "mask")
    finally:
        keras_io._pydataset_class.cache_clear()
    assert str(caught.value) == "to_keras needs Keras: pip install 'brinelite[keras]'"


def test_opencv_threads_are_one_only_while_batches_are_made(membrane):
    seen = []

    def process(sample):
        seen.append(cv2.getNumThreads())
        return seed_process(sample, size=8, augment=False)

    before = cv2.getNumThreads()
    cv2.setNumThreads(3)
    try:
        gen = membrane.to_keras("image", "mask", batch_size=4, processing_function=process)
        gen[0]
        assert seen == [1, 1, 1, 1] and cv2.getNumThreads() == 3
    finally:
        cv2.setNumThreads(before)
