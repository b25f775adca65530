"""glibc's malloc thresholds, which TensorFlow lowers when a generator dataset starts.

Keras feeds every ``PyDataset`` (so every :func:`brinelite.to_keras` feed) to TensorFlow
through a ``tf.data`` generator, and creating the first one sets glibc's M_MMAP_THRESHOLD to
128 KB (TensorFlow's guard against memory growth under Python 3.11), which also stops glibc
from raising it as it otherwise would. From then on every array over 128 KB (decoded
images, batches, and the model's own activation tensors) is mmapped, page-faulted in and
unmapped again at each use: training a small U-Net on 2 cores took twice as long per step.
:func:`restore` puts generous thresholds back; batching calls it before each batch, so
training fed by brinelite keeps its speed. Elsewhere than glibc (macOS, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import functools

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
MMAP_THRESHOLD = 32 << 20  # the ceiling glibc's own dynamic threshold rises to on 64-bit
TRIM_THRESHOLD = 128 << 20  # free memory kept at the heap's top before it is given back


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library if it is glibc, else None."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") else None


def restore() -> None:
    """Set the mmap and trim thresholds back to values that keep large arrays on the heap."""
    libc = _glibc()
    if libc is not None:
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
