"""Feeding a dataset to PyTorch: a map-style ``torch.utils.data.Dataset`` of ``(x, y)`` tensors.

:func:`to_torch` shares brinelite's sample core with ``to_keras`` (:func:`~brinelite.samples.
make_loader`): the same rows, the same processing stages, the same prepared cache and the same
per-(seed, epoch, row) augmentation, so for one seed both give the same samples. Only the
layout differs: ``x`` is float32 CxHxW; ``y`` is float32 1xHxW (CxHxW) for binary masks, and
int64 HxW class indices for a dataset with a class map, void as :data:`IGNORE_INDEX` (-100,
what ``torch.nn.CrossEntropyLoss`` ignores by default).

It is meant for ``DataLoader(ds, batch_size, shuffle=True, num_workers=N,
persistent_workers=True)``, with the fork or the spawn start method:

- it pickles small (rows and settings, never decoded arrays or prepared samples), so spawning
  workers is cheap; under spawn the processing functions must pickle (module-level functions);
- the epoch lives in one shared-memory tensor: :meth:`TorchSamples.set_epoch` (call it before
  each epoch, as with ``DistributedSampler.set_epoch``) reaches persistent workers too, so
  augmentation differs per epoch and is the same whatever the worker count;
- the prepared cache on disk is filled once, by all workers together, and then memory-mapped
  by each (:mod:`brinelite.prepared`); a memory cache is per process;
- a worker process is set up for making samples once (:func:`_worker_setup`): glibc's malloc
  thresholds raised, so a sample's large arrays stay on the heap (OpenCV's thread count is
  left alone: set in a forked worker, it waits forever on the pool the parent ran);
- a brinelite error in a worker (an image that does not decode, a failing function) comes
  back to the main process as a one-line :class:`WorkerError` naming the row and its files.

:func:`to_pytorch` is Brine's 2017 ``to_pytorch``: rows, images as PIL images, optional
torchvision transforms. torch is imported when one of them is called, never by
``import brinelite``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections import namedtuple
from typing import Any

import numpy as np

from . import malloc
from .errors import BrineliteError, DataError
from .prepared import DEFAULT_CACHE_BYTES
from .samples import ProcessingFunction, Rows, SampleLoader, Stages, make_loader
from .shards import EpochOrder

TORCH_MISSING = "to_torch needs PyTorch: pip install 'brinelite[torch]'"
IGNORE_INDEX = -100  # void in class-index targets: CrossEntropyLoss's default ignore_index


def _torch() -> Any:
    """The ``torch`` module, or the one-line error naming the extra that installs it."""
    try:
        import torch
    except ImportError:
        raise BrineliteError(TORCH_MISSING) from None
    return torch


class WorkerError(DataError):
    """A brinelite error raised in a DataLoader worker process, back in the main process.

    torch carries a worker's exception to the main process as its class and its formatted
    traceback only, and raises ``cls("Caught ... Original Traceback ...")`` there. The worker
    raises it through :meth:`carrying`, whose text is its message as one JSON string (newlines
    escaped), so the traceback's final line is ``brinelite.torch_io.WorkerError: "..."``
    whatever the message holds; this class decodes exactly that line and keeps the message
    (naming the row and its files), so the loop ends with brinelite's usual error and no
    worker dump. A row named to hold that marker cannot rewrite it: it is inside the JSON.
    """

    MARKER = f"{__name__}.WorkerError: "

    def __init__(self, message: str) -> None:
        last = message.rstrip("\n").rpartition("\n")[2]
        if last.startswith(self.MARKER):  # torch's rebuilt text: our line is the last
            with contextlib.suppress(ValueError):
                decoded = json.loads(last[len(self.MARKER) :])
                message = decoded if isinstance(decoded, str) else message
        super().__init__(message)

    @classmethod
    def carrying(cls, message: str) -> WorkerError:
        """The error a worker raises for ``message``: its text is the JSON torch will carry.

        Example::

            raise WorkerError.carrying(str(exc)) from exc
        """
        error = cls.__new__(cls)
        DataError.__init__(error, json.dumps(message))
        return error


def _in_worker() -> bool:
    return _torch().utils.data.get_worker_info() is not None


_worker_pid = 0  # the id of the worker process _worker_setup set up (a forked child is another)


def _worker_setup() -> None:
    """Once per DataLoader worker process: what a process that only makes samples needs.

    glibc's malloc thresholds raised (:func:`brinelite.malloc.restore`): at glibc's own, the
    arrays of a 256 px sample were mmapped, page-faulted in and unmapped at every use (630
    page faults a sample, 3.0 ms of worker time against 2.1 ms).
    """
    global _worker_pid
    if _worker_pid != os.getpid():
        malloc.restore()
        _worker_pid = os.getpid()


class TorchSamples:
    """``(x, y)`` tensors of one dataset view; built by :func:`to_torch`.

    A ``torch.utils.data.Dataset`` (map-style): ``len(ds)`` samples, ``ds[i]`` the tensors of
    position ``i`` in the current epoch. The sampler (``DataLoader(shuffle=True)``,
    ``DistributedSampler``) orders them; ``set_epoch`` tells every worker the epoch.
    """

    def __init__(self, loader: SampleLoader, order: EpochOrder) -> None:
        torch = _torch()
        self.loader, self.order = loader, order
        dataset = loader.dataset
        self.classes = dataset.manifest.classes if self._y_is_mask() else None
        # One int64 in shared memory: workers (forked or spawned, persistent or not) read it.
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._positions: tuple[int, np.ndarray] | None = None  # this process's epoch order

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (dict(self.__dict__, _positions=None),)

    @property
    def epoch(self) -> int:
        """The epoch whose augmentation (and shard, with ``shard=``) samples get."""
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` in every worker (call before iterating, as for samplers)."""
        self._epoch.fill_(int(epoch))

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, index: int) -> Any:
        if not 0 <= index < len(self):
            raise IndexError(f"Sample {index} is out of range ({len(self)} samples).")
        in_worker = _in_worker()
        if in_worker:
            _worker_setup()
        epoch = self.epoch
        position = self._position(int(index), epoch)
        try:
            x, y = self.loader.sample(position, epoch)
            return self._tensors(x, y, position)
        except BrineliteError as exc:
            if in_worker:
                raise WorkerError.carrying(str(exc)) from exc
            raise

    def _position(self, index: int, epoch: int) -> int:
        """The view's position read at ``index``: itself, or the shard's ``index``-th row."""
        if self.order.shard is None:
            return index
        if self._positions is None or self._positions[0] != epoch:
            self._positions = (epoch, self.order.epoch(epoch))
        return int(self._positions[1][index])

    def _y_is_mask(self) -> bool:
        columns = self.loader.columns
        return len(columns) > 1 and columns[1].isimage()

    def _tensors(self, x: Any, y: Any, position: int) -> Any:
        torch = _torch()
        image = torch.from_numpy(_channels_first(x, "x", lambda: self.loader.describe(position)))
        if len(self.loader.columns) == 1:
            return image
        if self.classes is not None:
            return image, torch.from_numpy(self._indices(y, position))
        if self._y_is_mask():
            describe = lambda: self.loader.describe(position)  # noqa: E731
            return image, torch.from_numpy(_channels_first(y, "y", describe))
        return image, torch.as_tensor(y)

    def _indices(self, y: Any, position: int) -> np.ndarray:
        """A class map's target as int64 HxW indices 0..N-1, void as :data:`IGNORE_INDEX`."""
        assert self.classes is not None
        labels = np.asarray(y)
        if labels.ndim == 3 and labels.shape[2] == 1:
            labels = labels[..., 0]
        if labels.ndim != 2:
            raise DataError(
                f"y of {self.loader.describe(position)} has shape {labels.shape}; a class "
                "map's target must be HxW or HxWx1 class indices."
            )
        if not self.loader.processed:
            labels = self.classes.to_indices(labels)  # the mask's ids as stored
        void = self.classes.void_index
        indices = labels.astype(np.int64)
        if indices.size and (
            indices.min() < 0 or indices.max() > void or (labels != indices).any()
        ):
            raise DataError(
                f"y of {self.loader.describe(position)} holds values outside 0..{void}: "
                "processing must give class indices, e.g. ClassMap.to_indices(mask) "
                f"(segtrain.processing.make_processor(classes=...)), with {void} for void."
            )
        indices[indices == void] = IGNORE_INDEX
        return indices

    def __repr__(self) -> str:
        shard = "" if self.order.shard is None else f", shard={self.order.shard}"
        return f"TorchSamples({self.loader.dataset.name}, samples={len(self)}{shard})"


def _channels_first(array: Any, name: str, describe: Any) -> np.ndarray:
    """A float32 CxHxW copy of an HxW or HxWxC array (never a view on cached samples)."""
    values = np.asarray(array, dtype=np.float32)
    if values.ndim == 2:
        values = values[np.newaxis]
    elif values.ndim == 3:
        values = values.transpose(2, 0, 1)
    else:
        raise DataError(
            f"{name} of {describe()} has shape {values.shape}; to_torch takes HxW or HxWxC "
            "images (processing returns them channels-last, as for to_keras)."
        )
    return np.array(values, dtype=np.float32, order="C", copy=True)


@functools.cache
def _dataset_class(base: type) -> type:
    """``base`` with ``torch.utils.data.Dataset`` mixed in (imports torch)."""
    torch = _torch()
    return type(base.__name__, (base, torch.utils.data.Dataset), {"__module__": __name__})


def _rebuild(state: dict[str, Any], base: type = TorchSamples) -> Any:
    """Unpickle a feed (its class is made at run time, so it pickles through here)."""
    made = object.__new__(_dataset_class(base))
    made.__dict__.update(state)
    return made


def to_torch(
    dataset: Rows,
    image_column: str,
    mask_column: str | None = None,
    *,
    processing_function: ProcessingFunction | None = None,
    prepare: ProcessingFunction | None = None,
    augment: ProcessingFunction | None = None,
    prepare_key: str | None = None,
    cache: str = "disk",
    cache_bytes: int = DEFAULT_CACHE_BYTES,
    cache_images: bool = False,
    seed: int | None = None,
    shard: tuple[int, int] | None = None,
    shard_remainder: str = "pad",
) -> TorchSamples:
    """Samples of ``dataset`` for a ``DataLoader``; see :meth:`brinelite.Dataset.to_torch`."""
    order = EpochOrder(len(dataset), shard is not None, seed, shard, shard_remainder)
    stages = Stages(
        processing_function, prepare, augment, prepare_key, cache, cache_bytes, cache_images
    )
    # DataLoader workers are the parallelism here: one thread per worker.
    loader = make_loader(dataset, image_column, mask_column, stages, seed=order.seed, workers=1)
    return _dataset_class(TorchSamples)(loader, order)


class BrineRows:
    """Brine's ``to_pytorch`` dataset: rows, with images and category indices.

    ``ds[i]`` is row ``i`` (a named tuple): category cells become their index; image cells
    become PIL images (as Brine gave them), or, with ``transform_columns="images"``,
    ``transform(image)``; with a ``transform`` and no ``transform_columns``, the whole row (image
    cells still paths) goes through ``transform``.
    """

    def __init__(
        self, dataset: Any, transform: Any = None, transform_columns: str | None = None
    ) -> None:
        _torch()
        if transform_columns not in (None, "images"):
            raise DataError(
                f"transform_columns must be 'images' or None, got {transform_columns!r}."
            )
        if transform_columns is not None and transform is None:
            raise DataError("transform_columns='images' needs a transform=... to apply.")
        self.dataset, self.transform, self.transform_columns = dataset, transform, transform_columns
        columns = dataset.manifest.columns
        self.images = [c.name for c in columns if c.isimage()]
        self.categories = {c.name: list(c.categories) for c in columns if c.categories}

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (dict(self.__dict__), BrineRows)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        row = _row_class(self.dataset.Row._fields)(*self.dataset[index])
        row = row._replace(**{n: self._index(n, getattr(row, n)) for n in self.categories})
        if self.transform is not None and self.transform_columns is None:
            return self.transform(row)
        convert = self.transform if self.transform is not None else (lambda image: image)
        return row._replace(**{n: convert(self._pil(getattr(row, n))) for n in self.images})

    def _index(self, name: str, value: Any) -> Any:
        labels = self.categories[name]
        if isinstance(value, list | tuple):
            return tuple(labels.index(v) for v in value)
        return labels.index(value)

    def _pil(self, path: str) -> Any:
        """The image as a PIL image, as Brine's ``load_image`` returned it."""
        try:
            from PIL import Image
        except ImportError:
            raise BrineliteError(
                "to_pytorch hands images as PIL images: pip install pillow (torchvision brings it)"
            ) from None
        pixels = self.dataset.load_image(path)
        return Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels)


@functools.cache
def _row_class(fields: tuple[str, ...]) -> type:
    """A ``Row`` named tuple that pickles (workers send rows back to the main process)."""
    row = namedtuple("Row", fields)  # type: ignore[misc]
    row.__module__ = __name__
    row.__reduce__ = lambda self: (_make_row, (self._fields, tuple(self)))  # type: ignore
    return row


def _make_row(fields: tuple[str, ...], values: tuple[Any, ...]) -> Any:
    return _row_class(fields)(*values)


def to_pytorch(dataset: Any, transform: Any = None, transform_columns: str | None = None) -> Any:
    """Brine's ``to_pytorch``; see :meth:`brinelite.Dataset.to_pytorch`."""
    return _dataset_class(BrineRows)(dataset, transform, transform_columns)
