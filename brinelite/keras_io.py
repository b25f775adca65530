"""Feeding a dataset to Keras 3: batches that ``model.fit`` accepts as they are.

:func:`to_keras` returns a ``keras.utils.PyDataset`` (so ``fit`` can prefetch
batches in its worker threads) that is also an endless iterator, as Brine's
generator was (``next(gen)``, ``gen.steps_per_epoch()``). Each sample is decoded
and passed through the user's processing function on a thread pool; OpenCV and
numpy release the GIL, so two cores really work in parallel. With more than one worker,
OpenCV's own thread pool is turned off (``cv2.setNumThreads(1)``, process-wide) so the two
levels of threads do not fight over the cores. Each batch also restores glibc's malloc
thresholds, which TensorFlow lowers when Keras starts feeding a ``PyDataset`` (see
:mod:`brinelite.malloc`).

Keras (and with it TensorFlow) is imported the first time a batch object is
built, never by ``import brinelite``.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Protocol

import numpy as np

from . import malloc
from .errors import BrineliteError, DataError
from .manifest import Column, Manifest

Sample = tuple[Any, Any]
ProcessingFunction = Callable[[Sample], Sample]


class _Failures:
    """The brinelite errors raised while making batches, kept as objects for the caller.

    Keras feeds a PyDataset through ``tf.data`` under TensorFlow, which turns an exception
    raised in a batch into a TensorFlow error carrying only its text. Keeping the original
    object lets :func:`original_errors` hand it back unchanged.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0
        self.last: BrineliteError | None = None

    def record(self, error: BrineliteError) -> None:
        with self._lock:
            self.count += 1
            self.last = error


_FAILURES = _Failures()


@contextmanager
def original_errors() -> Iterator[None]:
    """Re-raise a brinelite error from a batch as itself, not as the framework's wrapper.

    Wrap ``model.fit`` (or ``evaluate``/``predict``) fed by :func:`to_keras` batches: if
    reading a batch failed with a :class:`BrineliteError` (an image that does not decode, a
    failing processing function) and the framework reported it as its own error type, that
    error is replaced by the original object, message and type intact.

    Example::

        with brinelite.original_errors():
            model.fit(train.to_keras("image", "mask"), epochs=5)
    """
    seen = _FAILURES.count
    try:
        yield
    except BrineliteError:
        raise
    except Exception as exc:
        if _FAILURES.count == seen or _FAILURES.last is None:
            raise
        raise _FAILURES.last from exc


class Rows(Protocol):
    """What batching needs of a dataset view (:class:`brinelite.Dataset` provides it)."""

    name: str
    manifest: Manifest
    indices: np.ndarray

    def __len__(self) -> int: ...

    def __getitem__(self, position: int) -> Any: ...

    def column(self, name: str) -> Column: ...

    def load_image(self, path: str) -> np.ndarray: ...


class SampleLoader:
    """Turns row numbers into processed samples and stacked float32 batches."""

    def __init__(
        self,
        dataset: Rows,
        x_column: str,
        y_column: str | None,
        processing_function: ProcessingFunction | None,
        workers: int,
        cache_images: bool,
    ) -> None:
        self.dataset = dataset
        self.columns = [dataset.column(x_column)]
        if y_column is not None:
            self.columns.append(dataset.column(y_column))
        self.positions = [dataset.manifest.columns.index(c) for c in self.columns]
        self.category_index = {
            c.name: {label: k for k, label in enumerate(c.categories or ())} for c in self.columns
        }
        self.processing_function = processing_function
        if workers > 1:
            # Our threads already parallelise across samples; OpenCV's own pool on top of them
            # oversubscribes the cores (its workers spin) and made 2 workers no faster than 1.
            import cv2  # on first use, as in images.py

            cv2.setNumThreads(1)
        self.pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="brinelite")
        self.image_cache: dict[str, np.ndarray] | None = {} if cache_images else None

    def value(self, row: Any, position: int) -> Any:
        """One column of one row as the processing function receives it."""
        column = self.columns[position]
        cell = row[self.positions[position]]
        if column.isimage():
            image = self.image(cell)
            # Processing functions get float32 0-255 copies, as Brine's img_to_array gave them
            # (and a copy keeps cached pixels safe from in-place edits); batches convert anyway.
            return image if self.processing_function is None else image.astype(np.float32)
        if column.type == "category":
            return self.category_index[column.name][cell]
        return cell

    def image(self, relative: str) -> np.ndarray:
        """Decode an image file, from the in-memory cache when one is kept."""
        if self.image_cache is None:
            return self.dataset.load_image(relative)
        if relative not in self.image_cache:
            self.image_cache[relative] = self.dataset.load_image(relative)
        return self.image_cache[relative]

    def sample(self, position: int) -> Sample:
        """The processed ``(x, y)`` (``y`` None without a y column) of one row of the view."""
        row = self.dataset[position]
        try:
            values = [self.value(row, k) for k in range(len(self.columns))]
        except DataError as exc:
            raise DataError(f"Cannot load {self.describe(position)}: {exc}") from exc
        sample = (values[0], values[1] if len(values) > 1 else None)
        if self.processing_function is None:
            return sample
        try:
            result = self.processing_function(sample)
        except BrineliteError:
            raise
        except Exception as exc:
            raise DataError(
                f"processing_function failed on {self.describe(position)}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(result, tuple | list) or len(result) != 2:
            raise DataError(
                f"processing_function must return a pair (x, y); on {self.describe(position)} "
                f"it returned {type(result).__name__}."
            )
        return result[0], result[1]

    def describe(self, position: int) -> str:
        """'row N (files)' for error messages."""
        row = self.dataset[position]
        files = [
            str(row[k]) for k, c in zip(self.positions, self.columns, strict=True) if c.isimage()
        ]
        return f"row {int(self.dataset.indices[position])} ({', '.join(files)})"

    def batch(self, positions: np.ndarray) -> Any:
        """Stack the samples at ``positions`` into float32 arrays: ``(X, Y)``, or ``X`` alone."""
        if len(positions) > 1:
            samples = list(self.pool.map(self.sample, positions))
        else:
            samples = [self.sample(positions[0])]
        xs = self.stack([s[0] for s in samples], positions, "x")
        if len(self.columns) == 1:
            return xs
        return xs, self.stack([s[1] for s in samples], positions, "y")

    def stack(self, arrays: list[Any], positions: np.ndarray, part: str) -> np.ndarray:
        shapes = {np.shape(a) for a in arrays}
        if len(shapes) > 1:
            k = next(k for k, a in enumerate(arrays) if np.shape(a) != np.shape(arrays[0]))
            raise DataError(
                f"Samples of one batch have different {part} shapes {sorted(shapes)} "
                f"({np.shape(arrays[0])} at {self.describe(positions[0])}, "
                f"{np.shape(arrays[k])} at {self.describe(positions[k])}); pass a "
                "processing_function that "
                "resizes them, e.g. segtrain.processing.make_processor(size=256)."
            )
        stacked = np.empty((len(arrays), *shapes.pop()), np.float32)
        for k, array in enumerate(arrays):
            stacked[k] = array  # converts to float32 in the same pass as the copy
        return stacked


class KerasBatches:
    """Batches of one dataset view, in a per-epoch order.

    Built by :func:`to_keras`; an instance is a ``keras.utils.PyDataset`` too.
    Indexing gives batch ``i`` of the current epoch; Keras calls ``on_epoch_end``
    to draw the next epoch's order. As an iterator it runs forever, starting a
    new epoch after the last (possibly short) batch.
    """

    def __init__(
        self,
        loader: SampleLoader,
        batch_size: int,
        shuffle: bool,
        seed: int | None,
        workers: int,
    ) -> None:
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=8)
        self.loader = loader
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = np.random.SeedSequence(seed).entropy
        self.epoch = 0
        self._next_batch = 0
        self._order = self._epoch_order()

    def _epoch_order(self) -> np.ndarray:
        rows = len(self.loader.dataset)
        if not self.shuffle:
            return np.arange(rows)
        return np.random.default_rng([self.seed, self.epoch]).permutation(rows)

    def __len__(self) -> int:
        return -(-len(self.loader.dataset) // self.batch_size)

    def __getitem__(self, index: int) -> Any:
        if not 0 <= index < len(self):
            raise IndexError(f"Batch {index} is out of range ({len(self)} batches per epoch).")
        malloc.restore()  # Keras started a tf.data generator on us: undo its malloc settings
        start = index * self.batch_size
        try:
            return self.loader.batch(self._order[start : start + self.batch_size])
        except BrineliteError as exc:
            _FAILURES.record(exc)
            raise

    def on_epoch_end(self) -> None:
        """Draw the next epoch's order (Keras calls this after each epoch)."""
        self.epoch += 1
        self._order = self._epoch_order()

    def steps_per_epoch(self) -> int:
        """Batches in one epoch, counting a short last batch (Brine's spelling of ``len``)."""
        return len(self)

    def __iter__(self) -> KerasBatches:
        return self

    def __next__(self) -> Any:
        batch = self[self._next_batch]
        self._next_batch += 1
        if self._next_batch == len(self):
            self._next_batch = 0
            self.on_epoch_end()
        return batch

    def __repr__(self) -> str:
        return (
            f"KerasBatches({self.loader.dataset.name}, rows={len(self.loader.dataset)}, "
            f"batch_size={self.batch_size}, steps_per_epoch={len(self)}, shuffle={self.shuffle})"
        )


@functools.cache
def _pydataset_class() -> type:
    """:class:`KerasBatches` with ``keras.utils.PyDataset`` mixed in (imports Keras)."""
    import keras

    return type("KerasBatches", (KerasBatches, keras.utils.PyDataset), {})


def to_keras(
    dataset: Rows,
    x_column: str,
    y_column: str | None = None,
    batch_size: int = 32,
    shuffle: bool = True,
    processing_function: ProcessingFunction | None = None,
    seed: int | None = None,
    workers: int = 2,
    cache_images: bool = False,
) -> KerasBatches:
    """Batches of ``dataset`` for ``model.fit``; see :meth:`brinelite.Dataset.to_keras`.

    ``workers`` threads decode and process samples (and let Keras prefetch batches);
    ``cache_images`` keeps decoded images in memory so later epochs skip decoding.
    """
    if batch_size < 1:
        raise DataError(f"batch_size must be at least 1, got {batch_size}.")
    if len(dataset) == 0:
        raise DataError(f"{dataset!r} has no rows to batch; check the fold sizes.")
    loader = SampleLoader(dataset, x_column, y_column, processing_function, workers, cache_images)
    return _pydataset_class()(loader, batch_size, shuffle, seed, workers)


def to_tf_dataset(dataset: Rows, x_column: str, y_column: str | None = None, **kwargs: Any):
    """One epoch of :func:`to_keras` batches as a prefetching ``tf.data.Dataset``.

    Each new iteration (epoch) draws a new order when shuffling.
    """
    import tensorflow as tf

    batches = to_keras(dataset, x_column, y_column, **kwargs)
    first = batches[0]
    parts = first if isinstance(first, tuple) else (first,)
    signature = tuple(tf.TensorSpec((None, *p.shape[1:]), tf.float32) for p in parts)

    def generate():
        for index in range(len(batches)):
            yield batches[index]
        batches.on_epoch_end()

    spec = signature if isinstance(first, tuple) else signature[0]
    generated = tf.data.Dataset.from_generator(generate, output_signature=spec)
    return generated.prefetch(tf.data.AUTOTUNE)
