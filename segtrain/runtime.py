"""Where segtrain meets the machine: Keras and its backend, the dtype policy, the distribution.

This is the only module that imports TensorFlow, and only when Keras runs on it
(``KERAS_BACKEND``, default ``tensorflow``). Everything else in segtrain is written against
``keras``/``keras.ops`` and numpy, so ``KERAS_BACKEND=jax`` trains the same model.

- ``import_keras`` imports Keras (and initialises TensorFlow's devices) with TensorFlow's C++
  start-up banner muted; the other modules get Keras from it.
- ``resolve_precision`` picks the dtype policy; "auto" reads what the CPU reports.
- ``require_backend`` makes Keras load on a given backend (data-parallel needs JAX), or
  refuses when it is too late for that.
- ``distribution`` gives the scope to build the model in and the replica count. Strategies:
  "default" (one device) and "mirrored" (every local GPU, TensorFlow only); "data-parallel"
  (processes on one or more machines, JAX) is ``segtrain.distributed.start``, which returns
  the same ``Distribution``, saying also which process this is (process 0 writes the run).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from segtrain.errors import SegtrainError

TORCH_REFUSED = (
    "segtrain trains on the tensorflow or jax Keras backend, not torch (several times slower per "
    "step on CPU, see docs/segtrain.md): set KERAS_BACKEND=tensorflow or KERAS_BACKEND=jax"
)
BF16_FLAGS = re.compile(r"^flags\s*:.*\b(avx512_bf16|amx_bf16)\b", re.M)


@contextlib.contextmanager
def native_output_muted(fd: int = 2) -> Iterator[None]:
    """Send what C++ code writes to file descriptor ``fd`` (2 or 1) to /dev/null.

    On machines without CUDA, TensorFlow's C++ layer prints driver and CPU notices straight to
    fd 2 at import and at device start-up, and no setting silences all of them; Gloo prints
    its connection notice to fd 1 when JAX's processes first exchange data. Python's own output
    is kept: while the descriptor is muted, ``sys.stderr`` (``sys.stdout``) writes to a copy of
    the original descriptor (kept open: handlers made meanwhile may hold it).

    Example::

        with native_output_muted(1):
            agree_across_processes()  # no "[Gloo] Rank 0 is connected" on stdout
    """
    name = {1: "stdout", 2: "stderr"}[fd]
    try:
        saved = os.dup(fd)
    except OSError:  # no such stream at all: nothing to mute
        yield
        return
    python_stream = getattr(sys, name)
    try:
        on_fd = python_stream.fileno() == fd
    except (AttributeError, OSError, ValueError):  # captured (pytest, notebooks): leave it
        on_fd = False
    python_stream.flush()
    if on_fd:
        setattr(sys, name, open(saved, "w", buffering=1, closefd=False))  # noqa: SIM115
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    try:
        yield
    finally:
        getattr(sys, name).flush()
        os.dup2(saved, fd)
        os.close(devnull)
        setattr(sys, name, python_stream)


@functools.cache
def import_keras() -> ModuleType:
    """Import Keras once, quietly, and return it.

    Under the TensorFlow backend the devices are initialised here too, inside the muting, since
    that is when TensorFlow reports missing CUDA drivers.

    Example::

        keras = import_keras()
        keras.config.backend()  # "tensorflow", or "jax" with KERAS_BACKEND=jax
    """
    with native_output_muted():
        import keras

        if keras.config.backend() == "torch":  # eager on CPU: 2.6-17x TF step times (segtrain.md)
            raise SegtrainError(TORCH_REFUSED)
        if keras.config.backend() == "tensorflow":
            import tensorflow as tf

            tf.config.list_physical_devices()
    return keras


class WeightsSkipped(Exception):
    """Keras left part of a weights file unloaded (its "Skipping ..." warnings).

    Its message is one line: what the first warning names ("Skipping nested container at
    'model/layers/dense'"), or a generic line if the warning's text is not of that form.
    """

    GENERIC = "Keras skipped part of the weights file"

    @classmethod
    def from_warning(cls, message: str) -> WeightsSkipped:
        """The error for a Keras "Skipping ...: why" warning's text (its part before ":")."""
        # Keras reports the parts it could not place only in the warning's text (saving_lib's
        # "Skipping nested container at '...': ...", legacy h5's "Skipping loading weights
        # for ..."): it keeps them nowhere a caller can read, so the text is the only source.
        head = (message.split(":", 1)[0].strip().splitlines() or [""])[0][:200]
        return cls(head if head.startswith("Skipping ") else cls.GENERIC)


def load_weights(model, path: Path) -> None:
    """``model.load_weights(path)``, refusing a file Keras can only load in part.

    For parts of a file it cannot place, Keras warns "Skipping ..." and goes on with those
    layers untrained: for a weights file from elsewhere that is a refusal, not a warning to
    print before it. The optimizer's state, which a model to predict with has not built, is
    not needed and not asked for.

    Raises:
        WeightsSkipped: Keras skipped part of the file.
        ValueError, OSError, KeyError, TypeError: as Keras and h5py raise them for a file of
            other shapes or another layout, or no HDF5 file at all.

    Example::

        load_weights(model, Path("runs/a/best.weights.h5"))
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", "Skipping variable loading for optimizer")
        model.load_weights(path)
    skipped = [w for w in caught if str(w.message).startswith("Skipping")]
    if skipped:
        raise WeightsSkipped.from_warning(str(skipped[0].message))
    for warning in caught:  # any other warning is shown as it would have been
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


def set_seed(seed: int) -> None:
    """Seed Python, numpy and Keras (weights, shuffles) with ``seed``: reproducible runs.

    ``keras.utils.set_random_seed`` also seeds TensorFlow whenever it is installed (for tf.data
    pipelines), which imports it even under another backend; its start-up banner is muted here.
    """
    keras = import_keras()
    with native_output_muted():
        keras.utils.set_random_seed(seed)


def backend() -> str:
    """The name of the Keras backend in use ("tensorflow", "jax", ...)."""
    return import_keras().config.backend()


def versions() -> dict[str, str]:
    """The versions of Keras and of its backend, to record with a run."""
    name = backend()
    return {"keras": import_keras().__version__, name: importlib.metadata.version(name)}


def resolve_precision(precision: str, cpuinfo: str | None = None) -> str:
    """The dtype policy to train with: "auto" is mixed_bfloat16 only on CPUs with bf16 units.

    Without native bf16 (AVX512-BF16 or AMX-BF16) the CPU emulates it, slower than float32.

    Args:
        precision: "auto", "float32" or "mixed_bfloat16" (checked by ``RunConfig``).
        cpuinfo: the text of /proc/cpuinfo (read from the machine when None; tests pass it).

    Returns:
        "float32" or "mixed_bfloat16".

    Example::

        resolve_precision("auto", cpuinfo="flags : fpu avx512_bf16")  # "mixed_bfloat16"
    """
    if precision != "auto":
        return precision
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return "float32"
    return "mixed_bfloat16" if BF16_FLAGS.search(cpuinfo) else "float32"


def require_backend(name: str, reason: str) -> None:
    """Make Keras load on the backend ``name``, or refuse if it is set or loaded otherwise.

    Sets ``KERAS_BACKEND``, which Keras reads once, when first imported.

    Args:
        name: the backend needed ("jax").
        reason: who needs it, for the error ("--strategy data-parallel").

    Raises:
        SegtrainError: KERAS_BACKEND asks for another backend, or Keras already runs on one.

    Example::

        require_backend("jax", "--strategy data-parallel")
        import_keras().config.backend()  # "jax"
    """
    asked = os.environ.get("KERAS_BACKEND", name)
    if asked != name:
        raise SegtrainError(
            f"{reason} runs Keras on {name}, but KERAS_BACKEND is {asked}; "
            f"unset it or set KERAS_BACKEND={name}"
        )
    keras = sys.modules.get("keras")
    if keras is not None and keras.config.backend() != name:
        raise SegtrainError(
            f"{reason} runs Keras on {name}, but this Python process already imported Keras on "
            f"{keras.config.backend()}; run it in a new process (or set KERAS_BACKEND={name} "
            "before importing keras)"
        )
    os.environ["KERAS_BACKEND"] = name


@dataclass(frozen=True)
class Distribution:
    """How a run spreads over devices: build the model in ``scope()``.

    ``replicas`` counts the devices of every process; ``process_id`` is this process's rank
    among ``processes`` (one, but for data-parallel runs); process 0 writes the run folder.
    """

    name: str
    scope: Callable[[], AbstractContextManager]
    replicas: int
    process_id: int = 0
    processes: int = 1


def distribution(name: str) -> Distribution:
    """The distribution ``name`` ("default" or "mirrored", checked by ``RunConfig``).

    "default" runs on one device of any backend; "mirrored" copies the model onto every local
    GPU and splits each batch between them (``tf.distribute.MirroredStrategy``).

    Raises:
        SegtrainError: "mirrored" under another backend than TensorFlow.
    """
    if name == "default":
        return Distribution(name, contextlib.nullcontext, replicas=1)
    if backend() != "tensorflow":
        raise SegtrainError(
            f"--strategy {name} needs the TensorFlow backend, not {backend()}; "
            "unset KERAS_BACKEND or use --strategy default"
        )
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy()
    return Distribution(name, strategy.scope, strategy.num_replicas_in_sync)
