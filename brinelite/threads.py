"""OpenCV's own thread pool, turned off where brinelite's workers are the parallelism.

brinelite decodes and processes samples on its own threads; OpenCV's pool on top of them
oversubscribes the cores (its workers spin) and made 2 workers no faster than 1. The setting
is process-wide in OpenCV, so :func:`opencv_single_threaded` holds it at 1 only while at
least one batch is being made and puts the caller's value back when the last one is done.
DataLoader workers keep the count they inherit: setting it in a forked process waits forever
on the parent's pool once that pool has run (pthread_cond_destroy on threads the child lacks).
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
