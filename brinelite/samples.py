"""Samples and batches from dataset rows: decode, process, stack, on a thread pool.

:class:`SampleLoader` (built by :func:`make_loader`) is the one sample core both front-ends
use: :func:`brinelite.to_keras` feeds Keras batches from it, ``to_torch`` (``torch_io``) single
samples; it knows nothing of Keras or torch. It decodes a row's images (optionally keeping them
in memory), passes them through the user's processing (one ``processing_function``, or a cached
``prepare`` then ``augment``: :mod:`brinelite.prepared`), names the row and its files when a
function fails, and stacks samples into float32 batches, refusing mixed shapes with a hint.
OpenCV and numpy release the GIL, so its threads really run in parallel; OpenCV's own pool is
held at 1 meanwhile (:mod:`brinelite.threads`).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .errors import BrineliteError, DataError
from .manifest import Column, Manifest
from .prepared import DEFAULT_CACHE_BYTES, PreparedStore, Sample, cache_key, identity
from .threads import opencv_single_threaded

ProcessingFunction = Callable[[Sample], Sample]


class Rows(Protocol):
    """What batching needs of a dataset view (:class:`brinelite.Dataset` provides it)."""

    name: str
    manifest: Manifest
    indices: np.ndarray

    def __len__(self) -> int: ...

    def __getitem__(self, position: int) -> Any: ...

    def column(self, name: str) -> Column: ...

    def load_image(self, path: str) -> np.ndarray: ...


class Preparation:
    """``prepare`` once per row (kept in a :class:`PreparedStore`), then ``augment`` on copies.

    An ``augment`` with an ``rng`` parameter is handed a generator of its own for each row and
    epoch, seeded from ``seed`` (the batches' shuffle entropy), the epoch and the row: a row
    gets the same augmentation in the same epoch whichever worker thread computes it, so
    augmented runs repeat exactly with several workers.
    """

    def __init__(
        self,
        prepare: ProcessingFunction,
        augment: ProcessingFunction | None,
        store: PreparedStore,
        seed: int = 0,
    ) -> None:
        self.prepare, self.augment, self.store, self.seed = prepare, augment, store, seed
        self.seeded = augment is not None and _takes_rng(augment)

    def augmented(self, sample: Sample, epoch: int, row: int) -> Sample:
        """``augment(sample)``, with the row's own generator when ``augment`` takes one."""
        assert self.augment is not None
        if not self.seeded:
            return self.augment(sample)
        return self.augment(sample, rng=np.random.default_rng([self.seed, epoch, row]))


def _takes_rng(function: Callable[..., Any]) -> bool:
    """Whether ``function`` accepts an ``rng`` keyword argument."""
    try:
        return "rng" in inspect.signature(function).parameters
    except (TypeError, ValueError):  # builtins and some callables have no signature
        return False


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
        preparation: Preparation | None = None,
    ) -> None:
        self.dataset = dataset
        self.columns = columns(dataset, x_column, y_column)
        self.positions = [dataset.manifest.columns.index(c) for c in self.columns]
        self.category_index = {
            c.name: {label: k for k, label in enumerate(c.categories or ())} for c in self.columns
        }
        self.processing_function = processing_function
        self.preparation = preparation
        self.processed = processing_function is not None or preparation is not None
        self.workers = max(1, workers)
        self._pool: ThreadPoolExecutor | None = None
        self.image_cache: dict[str, np.ndarray] | None = {} if cache_images else None

    def __getstate__(self) -> dict[str, Any]:
        """Rows and settings only: no thread pool, no decoded images (they stay per process)."""
        state = dict(self.__dict__, _pool=None)
        if self.image_cache is not None:
            state["image_cache"] = {}
        return state

    @property
    def pool(self) -> ThreadPoolExecutor:
        """The worker threads, started when a batch first needs them."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="brinelite")
        return self._pool

    def value(self, row: Any, position: int) -> Any:
        """One column of one row as the processing function receives it."""
        column = self.columns[position]
        cell = row[self.positions[position]]
        if column.isimage():
            image = self.image(cell)
            # Processing functions get float32 0-255 copies, as Brine's img_to_array gave them
            # (and a copy keeps cached pixels safe from in-place edits); batches convert anyway.
            return image.astype(np.float32) if self.processed else image
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

    def loaded(self, position: int) -> Sample:
        """The decoded ``(x, y)`` (``y`` None without a y column) of one row of the view."""
        row = self.dataset[position]
        try:
            values = [self.value(row, k) for k in range(len(self.columns))]
        except DataError as exc:
            raise DataError(f"Cannot load {self.describe(position)}: {exc}") from exc
        return values[0], values[1] if len(values) > 1 else None

    def sample(self, position: int, epoch: int = 0) -> Sample:
        """The processed ``(x, y)`` of one row of the view in epoch ``epoch``."""
        if self.preparation is None:
            if self.processing_function is None:
                return self.loaded(position)
            return self.apply("processing_function", self.processing_function, position)
        preparation = self.preparation
        prepared = preparation.store.get(position)
        if prepared is None:
            made = self.apply("prepare", preparation.prepare, position)
            prepared = preparation.store.put(position, made, lambda: self.describe(position))
        if preparation.augment is None:
            return prepared  # stacking the batch copies it
        copies = tuple(None if part is None else np.array(part) for part in prepared)
        row = int(self.dataset.indices[position])
        augment = functools.partial(preparation.augmented, epoch=epoch, row=row)
        return self.apply("augment", augment, position, copies)

    def apply(
        self, name: str, function: ProcessingFunction, position: int, sample: Sample | None = None
    ) -> Sample:
        """``function(sample)`` (the loaded sample by default), its failures named by row."""
        sample = self.loaded(position) if sample is None else sample
        try:
            result = function(sample)
        except BrineliteError:
            raise
        except Exception as exc:
            raise DataError(
                f"{name} failed on {self.describe(position)}: {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(result, tuple | list) or len(result) != 2:
            raise DataError(
                f"{name} must return a pair (x, y); on {self.describe(position)} "
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

    def batch(self, positions: np.ndarray, epoch: int = 0) -> Any:
        """Stack the samples at ``positions`` into float32 arrays: ``(X, Y)``, or ``X`` alone."""
        single = self.workers == 1 or len(positions) == 1
        # Our threads already parallelise across samples; OpenCV's own pool on top of them
        # oversubscribes the cores (its workers spin) and made 2 workers no faster than 1.
        with contextlib.nullcontext() if single else opencv_single_threaded():
            if single:
                samples = [self.sample(p, epoch) for p in positions]
            else:
                samples = list(self.pool.map(self.sample, positions, [epoch] * len(positions)))
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


def columns(dataset: Rows, x_column: str, y_column: str | None) -> list[Column]:
    """The x column, and the y column when there is one."""
    return [dataset.column(x_column), *([] if y_column is None else [dataset.column(y_column)])]


@dataclass(frozen=True)
class Stages:
    """How a row becomes a sample, as ``to_keras`` and ``to_torch`` are told it.

    Either one ``processing_function`` (its decoded images kept in memory with
    ``cache_images``), or ``prepare`` (run once per row, its output kept in the ``cache``:
    "memory", "disk" or "auto", up to ``cache_bytes`` in memory; ``prepare_key`` names it when
    the function's code alone cannot) then ``augment`` on every sample of every epoch.
    """

    processing_function: ProcessingFunction | None = None
    prepare: ProcessingFunction | None = None
    augment: ProcessingFunction | None = None
    prepare_key: str | None = None
    cache: str = "auto"
    cache_bytes: int = DEFAULT_CACHE_BYTES
    cache_images: bool = False


def make_loader(
    dataset: Rows, x_column: str, y_column: str | None, stages: Stages, *, seed: int, workers: int
) -> SampleLoader:
    """The sample core of a feed: the checked processing ``stages`` over ``dataset``'s rows.

    Both ``to_keras`` and ``to_torch`` build their loader here, so for one ``seed`` (the
    shuffle entropy of :class:`~brinelite.shards.EpochOrder`) they give the same samples.
    Raises :class:`DataError` for an empty view and for stages that do not go together.
    """
    if len(dataset) == 0:
        raise DataError(f"{dataset!r} has no rows to feed; check the fold sizes.")
    preparation = None
    if stages.prepare is None:
        if stages.augment is not None or stages.prepare_key is not None:
            raise DataError(
                "augment and prepare_key need prepare=...; for one stage pass processing_function."
            )
    else:
        if stages.processing_function is not None:
            raise DataError(
                "Pass either processing_function (one stage) or prepare/augment (two), not both."
            )
        if stages.cache_images:
            raise DataError("cache_images is for processing_function; prepare keeps its own cache.")
        stated = identity(stages.prepare, stages.prepare_key)
        key = cache_key(dataset, [c.name for c in columns(dataset, x_column, y_column)], stated)
        store = PreparedStore(len(dataset), key, stages.cache, stages.cache_bytes)
        preparation = Preparation(stages.prepare, stages.augment, store, seed)
    return SampleLoader(
        dataset,
        x_column,
        y_column,
        stages.processing_function,
        workers,
        stages.cache_images,
        preparation,
    )
