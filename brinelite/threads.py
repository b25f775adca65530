"""OpenCV's own thread pool, turned off where brinelite's workers are the parallelism.

brinelite decodes and processes samples on its own threads; OpenCV's pool on top of them
oversubscribes the cores (its workers spin) and made 2 workers no faster than 1. The setting
is process-wide in OpenCV, so :func:`opencv_single_threaded` holds it at 1 only while at
least one batch is being made and puts the caller's value back when the last one is done.
A process that only makes samples (a DataLoader worker, where torch likewise sets its own
threads to 1) holds it at 1 for good: :func:`opencv_single_threaded_process`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_active = 0
_saved = 0


@contextmanager
def opencv_single_threaded() -> Iterator[None]:
    """Run the body with ``cv2.setNumThreads(1)``; nested and concurrent uses share it."""
    global _active, _saved
    import cv2  # on first use, as in images.py

    with _lock:
        if _active == 0:
            _saved = cv2.getNumThreads()
            cv2.setNumThreads(1)
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                cv2.setNumThreads(_saved)


def opencv_single_threaded_process() -> None:
    """Hold OpenCV's pool at one thread for the rest of this process (a DataLoader worker).

    torch sets its own threads to 1 in DataLoader workers for the same reason: the workers
    are the parallelism, and each one's OpenCV pool on top of them spins on the same cores.

    Example::

        if torch.utils.data.get_worker_info() is not None:
            opencv_single_threaded_process()
    """
    import cv2

    cv2.setNumThreads(1)
