"""Data-parallel training over processes on one or more machines: Keras' distribution API on JAX.

Every process of a ``--strategy data-parallel`` run runs the same program: it installs or opens
the dataset itself, builds the same model from the same seed and fits it on its own share of
each epoch (``to_keras(..., shard=(process_id, num_processes), seed=...)``). Keras'
``DataParallel`` joins the shares into one global batch per step (``batch_size`` x processes),
so all processes hold the same weights, step after step, as one process would at the global
batch. No gradient exchange is written here: JAX's collectives (Gloo over TCP on CPUs) do it.

- ``check_processes`` and ``launcher_settings``: the process options and Keras' variables
  (``KERAS_DISTRIBUTION_*``), which cluster launchers set.
- ``start``: join the other processes (process 0 listens on ``--bind``, else on the
  coordinator's own address, never on every interface unless told), prove the run's shared
  secret to each other before anything else (``segtrain.handshake``), and set the
  distribution; ``agree``: refuse to train unless every process has the same dataset and
  options (compared as HMACs under the secret).
- ``output_folder``: process 0 writes the run folder; the others run the same callbacks (JAX
  needs every process to take part in every operation on the weights, saving included) into a
  private scratch folder, deleted at the end.
- ``exit_on_failure``: a process that fails or loses a peer ends at once with one line,
  instead of waiting minutes at JAX's exit for peers that will never come.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import tempfile
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from brinelite import BrineliteError
from segtrain import handshake, runtime
from segtrain.errors import RunRefused, SegtrainError, first_line

GLOO_FAILED = re.compile(r"(UNKNOWN: )?Gloo \w+ failed")  # XLA's words for a failed collective

# What JAX says, in whichever exception type the failing call raises, when a peer is gone.
LAUNCHER_VARIABLES = {
    "num_processes": "KERAS_DISTRIBUTION_NUM_PROCESSES",
    "process_id": "KERAS_DISTRIBUTION_PROCESS_ID",
    "coordinator": "KERAS_DISTRIBUTION_JOB_ADDRESSES",
}


def launcher_settings(environ: Mapping[str, str] | None = None) -> dict[str, int | str]:
    """The process options a launcher set in Keras' own variables, as option names and values.

    Args:
        environ: the environment to read (default ``os.environ``; tests pass a dict).

    Returns:
        Some of ``num_processes``, ``process_id`` (ints) and ``coordinator``: those set.

    Example::

        launcher_settings({"KERAS_DISTRIBUTION_NUM_PROCESSES": "2"})  # {"num_processes": 2}
    """
    environ = os.environ if environ is None else environ
    found: dict[str, int | str] = {}
    for name, variable in LAUNCHER_VARIABLES.items():
        value = environ.get(variable, "").strip()
        if not value:
            continue
        if name == "coordinator":
            found[name] = value
        elif value.isascii() and value.isdigit():
            found[name] = int(value)
        else:
            raise SegtrainError(f"{variable}={value!r} is not a whole number; fix or unset it")
    return found


def check_processes(
    strategy: str,
    num_processes: int | None,
    process_id: int | None,
    coordinator: str | None,
    complete: bool = False,
    bind: str | None = None,
) -> None:
    """Refuse process options that cannot describe one run.

    Args:
        strategy: the run's strategy; the process options belong to "data-parallel" only.
        num_processes, process_id, coordinator, bind: the options (None: not given).
        complete: the options are final (launcher variables read): more than one process
            then needs a coordinator.

    Raises:
        SegtrainError: what is wrong, in one line.
    """
    if strategy != "data-parallel":
        if (num_processes or 1) != 1 or (process_id or 0) != 0 or (coordinator or bind):
            raise SegtrainError(
                "--num-processes, --process-id, --coordinator and --bind are options of "
                f"--strategy data-parallel, not of --strategy {strategy}; add --strategy "
                "data-parallel or drop them"
            )
        return
    addresses = [] if coordinator is None else coordinator_addresses(coordinator)
    if bind is not None and len(coordinator_addresses(bind, "--bind")) != 1:
        raise SegtrainError(
            f"--bind {bind!r} is one HOST:PORT: where process 0 listens (e.g. 10.0.0.1:12345)"
        )
    if num_processes is not None and process_id is not None and process_id >= num_processes:
        raise SegtrainError(
            f"--process-id {process_id} is not below --num-processes {num_processes}: "
            f"number the processes 0 to {num_processes - 1}"
        )
    if num_processes is not None and len(addresses) > 1 and len(addresses) != num_processes:
        raise SegtrainError(
            f"--coordinator lists {len(addresses)} addresses for {num_processes} processes; "
            "give process 0's HOST:PORT alone, or one address per process"
        )
    if complete and (num_processes or 1) > 1 and not addresses:
        raise SegtrainError(
            f"--strategy data-parallel with {num_processes} processes needs --coordinator "
            "HOST:PORT, where process 0 listens (or KERAS_DISTRIBUTION_JOB_ADDRESSES)"
        )


def coordinator_addresses(coordinator: str, option: str = "--coordinator") -> list[str]:
    """The ``HOST:PORT`` addresses in ``coordinator`` (comma-separated; the first is process 0).

    Raises:
        SegtrainError: an address that is not HOST:PORT with a port from 1 to 65535 (the
            error names ``option``).
    """
    addresses = [part.strip() for part in coordinator.split(",")]
    for address in addresses:
        host, _, port = address.rpartition(":")
        if not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
            raise SegtrainError(
                f"{option} {coordinator!r} is not HOST:PORT (process 0's address and a "
                "free port, e.g. 10.0.0.1:12345)"
            )
    return addresses


def start(
    num_processes: int, process_id: int, coordinator: str | None, bind: str | None = None
) -> runtime.Distribution:
    """Join the run's other processes and spread training over all their devices.

    Keras must already run on JAX (``runtime.require_backend("jax", ...)``) and be seeded
    (``runtime.set_seed``: Keras then needs no seed exchange). With more than one process the
    run's secret is read first (``handshake.read_secret``: none, no joining); process 0 then
    starts JAX's coordination service on ``bind`` (default: the coordinator's own address,
    not every interface as JAX would), every process waits (up to JAX's 5 minutes) until all
    have joined at ``coordinator``, and they prove the secret to each other
    (``handshake.prove``) before anything else is exchanged. JAX's CPU collectives go over
    Gloo (TCP). The data is not split by Keras (``auto_shard_dataset`` off): each process
    feeds its own shard.

    Returns:
        The distribution: global scope, one replica per device of every process.

    Raises:
        SegtrainError: no secret; this process could not listen or join at ``coordinator``;
            a process did not prove the secret.

    Example::

        distribution = start(2, 0, "10.0.0.1:12345")  # on process 0; process 1 passes 1
    """
    keras = runtime.import_keras()
    if num_processes > 1:
        secret = handshake.read_secret()
        client = join(num_processes, process_id, coordinator, bind)
        address = coordinator_addresses(coordinator)[0]
        handshake.prove(client, secret, process_id, num_processes, address)
    devices = keras.distribution.list_devices()
    layout = keras.distribution.DataParallel(devices=devices)
    layout.auto_shard_dataset = False
    keras.distribution.set_distribution(layout)
    return runtime.Distribution(
        "data-parallel",
        contextlib.nullcontext,
        replicas=len(devices),
        process_id=process_id,
        processes=num_processes,
    )


def join(
    num_processes: int, process_id: int, coordinator: str, bind: str | None = None
) -> handshake.Store:
    """``jax.distributed.initialize`` with the bind address given; JAX's key-value store.

    ``keras.distribution.initialize`` would not pass a bind address on (JAX then listens on
    ``[::]``, every interface), so JAX is called directly; the cluster detection JAX runs
    otherwise (Slurm, MPI, Kubernetes variables) is off: the options say everything.
    """
    import jax

    address = coordinator_addresses(coordinator)[0]
    listen = (bind or address) if process_id == 0 else None
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        with runtime.native_output_muted():  # gRPC's own log lines; the error says it all
            jax.distributed.initialize(
                address,
                num_processes,
                process_id,
                coordinator_bind_address=listen,
                cluster_detection_method="deactivate",
            )
    except Exception as exc:  # noqa: BLE001 (JAX raises several types, all mean one thing)
        where = f"listen on {listen} (in use, or not this machine's?) or " if listen else ""
        raise SegtrainError(
            f"process {process_id} of {num_processes} could not {where}join the run at "
            f"{address} ({first_line(exc)}); check --coordinator{' and --bind' if listen else ''}"
            " and that every process was started"
        ) from exc
    return joined_store()


def agree(process_id: int, items: dict[str, str]) -> None:
    """Refuse to train unless every process has the same ``items`` (what -> its description).

    Each process contributes the HMAC of each description under the run's secret (a plain
    hash of such predictable text would confirm guesses of it); one small collective gathers
    them, so every process reaches the same verdict and all of them stop together.

    Raises:
        RunRefused: the processes that differ from process 0, and on what.

    Example::

        agree(1, {"dataset": "gen/discs@1.0.0 fingerprint 3f2a", "options": "{...}"})
    """
    from jax.experimental import multihost_utils

    secret = handshake.read_secret()
    digests = np.stack(
        [
            np.frombuffer(handshake.digest(secret, what, text), np.uint8)
            for what, text in items.items()
        ]
    )
    with runtime.native_output_muted(1):  # Gloo's connection notice, on the first exchange
        gathered = np.asarray(multihost_utils.process_allgather(digests))
    for k, (what, text) in enumerate(items.items()):
        others = [str(p) for p in range(len(gathered)) if (gathered[p, k] != gathered[0, k]).any()]
        if others:
            raise RunRefused(
                f"process {', '.join(others)} has another {what} than process 0; process "
                f"{process_id} has {text}; start every process with the same options on the "
                "same dataset name@version"
            )


@contextlib.contextmanager
def output_folder(run_dir: Path, process_id: int, copied: tuple[str, ...] = ()) -> Iterator[Path]:
    """The folder this process writes into: process 0 the run folder, the others a scratch one.

    The scratch folder (under ``tempfile.gettempdir()``) starts with copies of the run
    folder's entries ``copied`` (the backup and history.csv when resuming, so every process
    restores the same state) and is deleted on leaving the context.

    Example::

        with output_folder(Path("runs/a"), 1, ("backup",)) as out:
            out  # PosixPath('/tmp/segtrain-process-1-k2j4x9')
    """
    if process_id == 0:
        yield run_dir
        return
    with tempfile.TemporaryDirectory(prefix=f"segtrain-process-{process_id}-") as scratch:
        for name in copied:
            source, target = run_dir / name, Path(scratch) / name
            if source.is_dir():
                shutil.copytree(source, target)
            elif source.is_file():
                shutil.copy2(source, target)
        yield Path(scratch)


@contextlib.contextmanager
def exit_on_failure(process_id: int, num_processes: int) -> Iterator[None]:
    """In a run of several processes, end this one at once if anything fails: one line, exit 1.

    Raising would not do: at exit JAX waits (minutes) at a barrier for every process, and the
    peers wait in a collective for this one. Ending now closes its connections, so each peer
    fails at its next collective and ends the same way ("lost contact with its peers"). A
    ``RunRefused`` (the handshake, the agreement) ends every process: once its line is out,
    each leaves the coordination service with the others first (``leave_together``).
    Errors of segtrain and brinelite print their message; others (bugs) their traceback.
    """
    if num_processes == 1:
        yield
        return
    try:
        yield
    except BaseException as exc:  # noqa: BLE001 (every way out must skip JAX's exit barrier)
        print(f"Error: {failure_message(exc, process_id, num_processes)}", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        if isinstance(exc, RunRefused):
            leave_together()
        os._exit(1)


def leave_together() -> None:
    """Leave JAX's coordination service with every other process of the run; never raises.

    Every process of a run that ends together calls it, once its one line is out. Process 0's
    end ends the service, and JAX aborts each process still joined to it then (a fatal log
    and a C++ trace after its line), whatever the timing: so they all leave through JAX's
    shutdown barrier, which process 0 passes only once every other process has reached it
    (or JAX's shutdown timeout has passed: a peer that never comes), and the service stops
    last. A process that has left is no longer watched by JAX, and exits cleanly.

    Example::

        leave_together()  # then os._exit(1)
    """
    if joined_store() is None:
        return
    import jax

    with contextlib.suppress(Exception), runtime.native_output_muted():
        jax.distributed.shutdown()


def joined_store() -> handshake.Store | None:
    """JAX's key-value store, once this process has joined a run (``join``); else None."""
    if "jax" not in sys.modules:
        return None
    from jax._src import distributed as jax_distributed

    return jax_distributed.global_state.client


def failure_message(exc: BaseException, process_id: int, num_processes: int) -> str:
    """The one line a failed process of a data-parallel run prints (see ``exit_on_failure``)."""
    import jax

    who = f"process {process_id} of {num_processes}"
    if isinstance(exc, SegtrainError | BrineliteError):
        return f"{exc} ({who})"
    if peer_lost(exc, jax.errors.JaxRuntimeError):
        return (
            f"{who} lost contact with its peers ({first_line(exc)}); "
            "rerun every process with --resume"
        )
    if isinstance(exc, KeyboardInterrupt):
        return f"{who} interrupted; rerun every process with --resume"
    traceback.print_exception(exc)
    return f"{who} failed ({first_line(exc)}); rerun every process with --resume"


def peer_lost(exc: BaseException | None, runtime_error: type) -> bool:
    """Whether ``exc`` or an exception in its chain is JAX's runtime error (``runtime_error``:
    a Gloo collective or a coordination-service call failed), a dropped connection, or an
    exception XLA raised with Gloo's own mark (``GLOO_FAILED``).

    By type where there is one. XLA raises a failed Gloo collective inside ``device_put`` as a
    plain ValueError ("UNKNOWN: Gloo AllGather failed: ... Connection reset by peer"), so for
    that one its message's first words are the only mark; segtrain's and brinelite's own
    errors are decided before this (a join error quoting the service is not a lost peer).
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, runtime_error | ConnectionError) or GLOO_FAILED.match(str(exc)):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False
