"""Feeding a dataset to Keras 3: batches that ``model.fit`` accepts as they are.

:func:`to_keras` returns a ``keras.utils.PyDataset`` (so ``fit`` can prefetch
batches in its worker threads) that is also an endless iterator, as Brine's
generator was (``next(gen)``, ``gen.steps_per_epoch()``). Each sample is decoded
and passed through the user's processing (one ``processing_function``, or a cached
``prepare`` then ``augment``: :mod:`brinelite.prepared`) on a thread pool; OpenCV and
numpy release the GIL, so two cores really work in parallel. Which rows an epoch reads,
and which share of them one process of a data-parallel run reads: :mod:`brinelite.shards`.

Two process-wide settings are made here and only here, for the batches' sake:
OpenCV's thread pool is held at 1 while batches are made with more than one worker
(:mod:`brinelite.threads`), and under the TensorFlow backend each batch restores glibc's
malloc thresholds, which TensorFlow lowers when Keras starts feeding a ``PyDataset``
(:mod:`brinelite.malloc`; opt out with ``malloc_fix=False`` or ``BRINELITE_NO_MALLOC_FIX=1``).

Keras (and with it TensorFlow) is imported the first time a batch object is
built, never by ``import brinelite``.
"""

from __future__ import annotations

import functools
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from . import malloc, settings
from .errors import BrineliteError, DataError
from .prepared import DEFAULT_CACHE_BYTES
from .samples import ProcessingFunction, Rows, SampleLoader, Stages, make_loader
from .shards import EpochOrder

KERAS_MISSING = "to_keras needs Keras: pip install 'brinelite[keras]'"


class _Failures:
    """The brinelite errors raised while making batches, kept as objects for the caller.

    Keras feeds a PyDataset through ``tf.data`` under TensorFlow, which turns an exception
    raised in a batch into a TensorFlow error carrying only its text (TensorFlow converts it
    in C++; no reference to the object survives). While at least one :func:`original_errors`
    block is open, the last few errors are kept, and a framework error is matched to the one
    whose message it quotes, so two threads (or two fits) never get each other's error.
    """

    def __init__(self, keep: int = 32) -> None:
        self._lock = threading.Lock()
        self._listeners = 0
        self._recent: deque[BrineliteError] = deque(maxlen=keep)

    def record(self, error: BrineliteError) -> None:
        with self._lock:
            if self._listeners:
                self._recent.append(error)

    @contextmanager
    def listening(self) -> Iterator[None]:
        with self._lock:
            self._listeners += 1
        try:
            yield
        finally:
            with self._lock:
                self._listeners -= 1
                if not self._listeners:
                    self._recent.clear()  # their tracebacks hold whole batches

    def quoted_by(self, wrapper: BaseException) -> BrineliteError | None:
        """The newest kept error whose ``Type: message`` the framework's error quotes."""
        text = str(wrapper)
        with self._lock:
            for error in reversed(self._recent):
                if f"{type(error).__name__}: {error}" in text:
                    return error
        return None


_FAILURES = _Failures()


@contextmanager
def original_errors() -> Iterator[None]:
    """Re-raise a brinelite error from a batch as itself, not as the framework's wrapper.

    Wrap ``model.fit`` (or ``evaluate``/``predict``) fed by :func:`to_keras` batches: if
    reading a batch failed with a :class:`BrineliteError` (an image that does not decode, a
    failing processing function) and the framework reported it as its own error type (as
    TensorFlow's ``tf.data`` does), that error is replaced by the original object, message
    and type intact. Other errors pass through unchanged; it is safe in several threads.
    Under the JAX and torch backends Keras already raises the original, and so does the
    first batch under TensorFlow (Keras reads it before starting ``tf.data``).

    Example::

        with brinelite.original_errors():
            model.fit(train.to_keras("image", "mask"), epochs=5)
    """
    with _FAILURES.listening():
        try:
            yield
        except BrineliteError:
            raise
        except Exception as exc:
            original = _FAILURES.quoted_by(exc)
            if original is None:
                raise
            raise original from exc


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
        order: EpochOrder,
        workers: int,
        malloc_fix: bool = False,
    ) -> None:
        self.loader = loader
        self.batch_size = batch_size
        self.order = order
        self.shuffle = order.shuffle
        self.malloc_fix = malloc_fix
        self.epoch = 0
        self._next_batch = 0
        self._order = order.epoch(0)
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=8)

    def __len__(self) -> int:
        return -(-len(self.order) // self.batch_size)

    def __getitem__(self, index: int) -> Any:
        if not 0 <= index < len(self):
            raise IndexError(f"Batch {index} is out of range ({len(self)} batches per epoch).")
        if self.malloc_fix:
            malloc.restore()  # Keras started a tf.data generator on us: undo its malloc settings
        start = index * self.batch_size
        try:
            return self.loader.batch(self._order[start : start + self.batch_size], self.epoch)
        except BrineliteError as exc:
            _FAILURES.record(exc)
            raise

    def on_epoch_end(self) -> None:
        """Draw the next epoch's order (Keras calls this after each epoch)."""
        self.epoch += 1
        self._order = self.order.epoch(self.epoch)

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
        shard = "" if self.order.shard is None else f", shard={self.order.shard}"
        return (
            f"KerasBatches({self.loader.dataset.name}, rows={len(self.order)}, "
            f"batch_size={self.batch_size}, steps_per_epoch={len(self)}, "
            f"shuffle={self.shuffle}{shard})"
        )


@functools.cache
def _pydataset_class() -> type:
    """:class:`KerasBatches` with ``keras.utils.PyDataset`` mixed in (imports Keras)."""
    try:
        import keras
    except ImportError:
        raise BrineliteError(KERAS_MISSING) from None
    return type("KerasBatches", (KerasBatches, keras.utils.PyDataset), {})


def _tensorflow_backend() -> bool:
    """True when Keras runs on TensorFlow (Keras is imported by then)."""
    import keras

    return keras.backend.backend() == "tensorflow"


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
    *,
    prepare: ProcessingFunction | None = None,
    augment: ProcessingFunction | None = None,
    prepare_key: str | None = None,
    cache: str = "auto",
    cache_bytes: int = DEFAULT_CACHE_BYTES,
    shard: tuple[int, int] | None = None,
    shard_remainder: str = "pad",
    malloc_fix: bool | None = None,
) -> KerasBatches:
    """Batches of ``dataset`` for ``model.fit``; see :meth:`brinelite.Dataset.to_keras`."""
    if batch_size < 1:
        raise DataError(f"batch_size must be at least 1, got {batch_size}.")
    order = EpochOrder(len(dataset), shuffle, seed, shard, shard_remainder)
    stages = Stages(
        processing_function, prepare, augment, prepare_key, cache, cache_bytes, cache_images
    )
    loader = make_loader(dataset, x_column, y_column, stages, seed=order.seed, workers=workers)
    batches_class = _pydataset_class()
    if malloc_fix is None:
        malloc_fix = not settings.malloc_fix_disabled()
    return batches_class(loader, batch_size, order, workers, malloc_fix and _tensorflow_backend())


def to_tf_dataset(dataset: Rows, x_column: str, y_column: str | None = None, **kwargs: Any):
    """One epoch of :func:`to_keras` batches as a prefetching ``tf.data.Dataset``.

    Each new iteration (epoch) draws a new order when shuffling.
    """
    batches = to_keras(dataset, x_column, y_column, **kwargs)
    try:
        import tensorflow as tf
    except ImportError:
        raise BrineliteError(
            "to_tf_dataset needs TensorFlow: pip install 'brinelite[keras]' tensorflow"
        ) from None
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
