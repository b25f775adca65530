"""Data-parallel training: processes on 127.0.0.1 train one run (keras.distribution on JAX).

Every run here is a real process (Keras must load on JAX, and each process of a run is its own
JAX process); the tiny model at 32 px, 8 training rows and a global batch of 4 keep each one
to a few steps. Compiled programs are shared between the runs through the suite's JAX cache.
"""

import csv
import hashlib
import ipaddress
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import jax  # the train extra's JAX: data-parallel runs on it; never skipped
import numpy as np
import pytest
from conftest import make_pairs

import brinelite
from segtrain import handshake
from segtrain.distributed import check_processes, failure_message, launcher_settings
from segtrain.errors import RunRefused, SegtrainError

OPTIONS = {
    "model": "tiny", "size": 32, "val": 4, "lr": 3e-3, "seed": 0, "precision": "float32",
    "augment": False,
}  # fmt: skip
RUN_FILES = {
    "config.json",
    "split.json",
    "best.weights.h5",
    "model.keras",
    "history.csv",
    "curves.png",
    "backup",
}  # fmt: skip  (no logs/: Keras writes TensorBoard logs with TensorFlow only)
# The two processes' losses against one process's at the same global batch. The global batches
# hold the same rows, but their sums run in another order: float32 rounding differs in the last
# bits, and RMSprop's first steps (gradient / its own RMS) turn tiny differences of near-zero
# gradients into whole steps of those weights, so later losses drift apart by ~1e-4.
LOSS_TOLERANCE = 2e-3
# Fails a hung run instead of waiting for ever; no assertion is made on how long anything took.
HANG_GUARD = 1200  # an idle run takes ~100 s; several times that on a busy machine is no hang
SECRET = "4f1c0e9a7b2d6c8e5a3f1b0d9c7e2a64"  # every process of a run proves it holds this
ANOTHER_SECRET = "another secret, long enough too"

TRAIN_SCRIPT = """
import json, sys
import numpy as np
import segtrain
out, weights, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
run = segtrain.train("gen/discs", out, verbose=0, **options)
np.savez(weights, *run.model.get_weights(), loss=run.history["loss"],
         val_loss=run.history["val_loss"])
"""
# A program that reaches the coordinator port without the secret, as process 0 (it listens
# first) or as process 1 (it joins a run): it speaks segtrain's handshake, with guessed values,
# and prints every byte it is given. As process 1 it reads its verdict only once told to on
# stdin (the test waits until process 0 has said why it ends), then leaves the coordination
# service with process 0, as segtrain's refused processes do; as process 0 it waits to be
# killed, so that it does not end the run for the honest process before that one has spoken.
ROGUE_SCRIPT = """
import os, sys, time
import jax
from jax._src import distributed
coordinator, me = sys.argv[1], int(sys.argv[2])
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(coordinator, 2, me, cluster_detection_method="deactivate")
store, key = distributed.global_state.client, "segtrain/handshake/"
def receive(name):
    print(name, store.blocking_key_value_get_bytes(key + name, 600_000), flush=True)
if me == 1:
    receive("challenge")
    store.key_value_set_bytes(key + "answer/1", os.urandom(64))
    sys.stdin.readline()
    receive("verdict")
    jax.distributed.shutdown()
    print("left", flush=True)
else:
    store.key_value_set_bytes(key + "challenge", os.urandom(32))
    receive("answer/1")
    store.key_value_set_bytes(key + "verdict", b"accepted" + os.urandom(32))
    time.sleep(600)
"""


@pytest.fixture
def discs(tmp_path) -> str:
    """Twelve generated disc pairs installed as gen/discs@1.0.0: 8 training rows, 4 validation."""
    brinelite.install(str(make_pairs(tmp_path / "discs", count=12)), name="gen/discs@1.0.0")
    return "gen/discs"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def environment(jax_cache: dict[str, str], tmp: Path, **extra: str) -> dict[str, str]:
    """This test's environment for a child process, with its own temporary folder: none of
    the caller's Keras, JAX or segtrain settings but the run's JAX cache (``jax_cache``)."""
    tmp.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KERAS_", "JAX_", "SEGTRAIN_"))}
    return env | jax_cache | {"TMPDIR": str(tmp), **extra}


def start(command: list[str], env: dict[str, str], log: Path, **popen) -> subprocess.Popen:
    """Start ``command`` with stdout in ``log``.out and stderr in ``log``.err."""
    return subprocess.Popen(
        command, env=env, stdout=log.with_suffix(".out").open("w"),
        stderr=log.with_suffix(".err").open("w"), **popen,
    )  # fmt: skip


def finish(process: subprocess.Popen, log: Path) -> tuple[int, str, str]:
    """Wait for ``process`` (failing the test if it hangs); its code, stdout and stderr."""
    code = process.wait(timeout=HANG_GUARD)
    return code, log.with_suffix(".out").read_text(), log.with_suffix(".err").read_text()


def cli_command(coordinator: str, run: Path, process_id: int, *extra: str) -> list[str]:
    """``segtrain train`` as process ``process_id`` of a two-process run into ``run``."""
    options = [f"--{k.replace('_', '-')}={v}" for k, v in OPTIONS.items() if k != "augment"]
    return [
        sys.executable, "-m", "segtrain", "train", "gen/discs", *options, "--no-augment",
        "--batch-size=2", "--strategy=data-parallel", "--num-processes=2",
        f"--coordinator={coordinator}", f"--process-id={process_id}", f"--out={run}",
        "--quiet", *extra,
    ]  # fmt: skip


def api_command(run: Path, weights: Path, resume: bool = False, **options) -> list[str]:
    """``segtrain.train`` in a new process, saving its final weights and history to ``weights``."""
    arguments = {**OPTIONS, **options, "resume": resume}
    return [sys.executable, "-c", TRAIN_SCRIPT, str(run), str(weights), json.dumps(arguments)]


def epochs(run: Path) -> list[str]:
    """The epoch column of a run's history.csv."""
    with (run / "history.csv").open() as handle:
        return [row["epoch"] for row in csv.DictReader(handle)]


def wait_for_an_epoch(run: Path, processes: list[subprocess.Popen]) -> None:
    """Return once the run's history holds an epoch; fail if a process ends first."""
    deadline = time.monotonic() + HANG_GUARD
    while not (run / "history.csv").is_file() or not epochs(run):
        assert time.monotonic() < deadline, "no epoch finished"
        assert all(p.poll() is None for p in processes), "a process ended on its own"
        time.sleep(0.2)


def wait_for_an_error(log: Path, process: subprocess.Popen) -> None:
    """Return once ``process`` has written its one-line error to ``log``.err."""
    deadline = time.monotonic() + HANG_GUARD
    while "Error: " not in log.with_suffix(".err").read_text():
        assert time.monotonic() < deadline, "no error line"
        assert process.poll() is None, "the process ended without its error line"
        time.sleep(0.2)


def listening(port: int) -> set[str]:
    """The local addresses TCP sockets listen on at ``port`` (from /proc/net/tcp and tcp6).

    An IPv6 socket bound to an IPv4 address (gRPC's way) counts as that address.
    """
    found = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(address)  # 32-bit words in the host's (little) byte order
                words = b"".join(raw[k : k + 4][::-1] for k in range(0, len(raw), 4))
                address = ipaddress.ip_address(socket.inet_ntop(family, words))
                found.add(str(getattr(address, "ipv4_mapped", None) or address))
    return found


def last_line(err: str) -> str:
    """The last line a process wrote to stderr."""
    return err.strip().splitlines()[-1]


def final_weights(run: Path) -> list[np.ndarray]:
    """The weights of the run's final model.keras (read here, under the tests' backend)."""
    import keras

    return keras.models.load_model(run / "model.keras", compile=False).get_weights()


def test_two_processes_train_one_run_survive_a_lost_peer_and_resume(discs, tmp_path, jax_cache):
    run, alone = tmp_path / "run", tmp_path / "alone"
    port = free_port()
    coordinator = f"127.0.0.1:{port}"
    secret_file = tmp_path / "run.secret"
    secret_file.write_text(SECRET + "\n")
    env = [
        environment(jax_cache, tmp_path / "tmp0", SEGTRAIN_SECRET=SECRET),
        environment(jax_cache, tmp_path / "tmp1", SEGTRAIN_SECRET_FILE=str(secret_file)),
    ]
    logs = [tmp_path / f"process{i}" for i in (0, 1)]

    # Two processes with the secret start one run through the CLI; process 0 listens on the
    # coordinator's address only (JAX's default is every interface); process 1 is killed
    # after an epoch.
    first, second = (
        start(cli_command(coordinator, run, i, "--epochs=100"), env[i], logs[i]) for i in (0, 1)
    )
    wait_for_an_epoch(run, [first, second])
    assert listening(port) == {"127.0.0.1"}
    second.kill()
    code, _, err = finish(first, logs[0])
    assert code == 1, err
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith("Error: process 0 of 2 lost contact with its peers (")
    ), err
    assert err.strip().endswith("); rerun every process with --resume")
    assert "Traceback" not in err
    done = json.loads((run / "backup" / "training_metadata.json").read_text())["epoch"]
    assert done >= 1 and epochs(run) == [str(epoch) for epoch in range(done)]
    killed_scratch = set((tmp_path / "tmp1").iterdir())  # SIGKILL left process 1's behind

    # Both resume from the last finished epoch: process 0 through the CLI, process 1 through
    # the Python API (to hand its final weights to this test). Meanwhile one process trains
    # alone, at their global batch of 4, the epochs finished before the kill.
    coordinator = f"127.0.0.1:{free_port()}"
    total = done + 1
    processes = {
        "process0": start(
            cli_command(coordinator, run, 0, "--resume", f"--epochs={total}"), env[0], logs[0]
        ),
        "process1": start(
            api_command(
                run,
                tmp_path / "process1.npz",
                resume=True,
                epochs=total,
                batch_size=2,
                strategy="data-parallel",
                num_processes=2,
                process_id=1,
                coordinator=coordinator,
            ),
            env[1],
            logs[1],
        ),  # fmt: skip
        "alone": start(
            api_command(alone, tmp_path / "alone.npz", epochs=done, batch_size=4),
            environment(jax_cache, tmp_path / "tmp-alone", KERAS_BACKEND="jax"),
            tmp_path / "alone",
        ),
    }
    for name, process in processes.items():
        code, out, err = finish(process, tmp_path / name)
        assert code == 0, f"{name}: {err}"
    assert "Run folder:" in (tmp_path / "process0.out").read_text()
    assert epochs(run) == [str(epoch) for epoch in range(total)]

    # The processes end with the same weights, bit for bit: one model, trained together...
    process1, by_itself = np.load(tmp_path / "process1.npz"), np.load(tmp_path / "alone.npz")
    chief = final_weights(run)
    assert len(chief) == len([key for key in process1.files if key.startswith("arr_")])
    assert all(np.array_equal(w, process1[f"arr_{k}"]) for k, w in enumerate(chief))
    # ...and until the kill they had the losses of one process at the global batch. (After a
    # resume, JAX runs differ from uninterrupted ones in the last digits: see docs/segtrain.md.)
    for key in ("loss", "val_loss"):
        history = [float(row[key]) for row in csv.DictReader((run / "history.csv").open())]
        assert len(history) == len(process1[key]) == total
        np.testing.assert_allclose(history[:done], by_itself[key], rtol=LOSS_TOLERANCE)
        np.testing.assert_allclose(process1[key], history, rtol=1e-6)

    # Process 0 wrote the run folder; process 1's scratch copy of its part is gone.
    assert {path.name for path in run.iterdir()} == RUN_FILES
    assert set((tmp_path / "tmp1").iterdir()) == killed_scratch
    config = json.loads((run / "config.json").read_text())
    assert (config["num_processes"], config["batch_size"], config["global_batch"]) == (2, 2, 4)
    assert (config["backend"], config["replicas"], config["process_id"]) == ("jax", 2, 0)
    # The secret is in no file of the run and in nothing the processes printed.
    written = [path for path in run.rglob("*") if path.is_file()]
    written += [tmp_path / f"{name}.{kind}" for name in processes for kind in ("out", "err")]
    assert not [path for path in written if SECRET.encode() in path.read_bytes()]


def test_processes_with_different_datasets_refuse_to_train(tmp_path, jax_cache):
    """Each node installs into its own cache: one with other bytes under the same name stops all."""
    coordinator = f"127.0.0.1:{free_port()}"
    processes = []
    for i in (0, 1):
        home = tmp_path / f"home{i}"
        pairs = make_pairs(tmp_path / f"discs{i}", count=12, seed=i)  # other discs on node 1
        env = environment(
            jax_cache, tmp_path / f"tmp{i}", BRINELITE_HOME=str(home), SEGTRAIN_SECRET=SECRET
        )
        install = [sys.executable, "-m", "brinelite", "install", str(pairs)]
        subprocess.run([*install, "--name", "gen/discs@1.0.0"], env=env, check=True)
        processes.append(
            start(cli_command(coordinator, tmp_path / "run", i), env, tmp_path / f"p{i}")
        )
    for i, process in enumerate(processes):
        code, _, err = finish(process, tmp_path / f"p{i}")
        assert code == 1, err
        assert (
            err.strip()
            .splitlines()[-1]
            .startswith(
                f"Error: process 1 has another dataset than process 0; process {i} has "
                "gen/discs@1.0.0 (sha256 "
            )
        ), err
    assert not (tmp_path / "run" / "model.keras").exists()


def test_processes_with_another_secret_refuse_each_other_before_exchanging_anything(
    discs, tmp_path, jax_cache
):
    """A segtrain process with another secret is refused; neither side learns the other's run."""
    coordinator = f"127.0.0.1:{free_port()}"
    secrets = (SECRET, ANOTHER_SECRET)
    processes = [
        start(
            cli_command(coordinator, tmp_path / "run", i),
            environment(jax_cache, tmp_path / f"tmp{i}", SEGTRAIN_SECRET=secrets[i]),
            tmp_path / f"p{i}",
        )
        for i in (0, 1)
    ]
    (code0, out0, err0), (code1, out1, err1) = (
        finish(process, tmp_path / f"p{i}") for i, process in enumerate(processes)
    )
    assert (code0, code1) == (1, 1), (err0, err1)
    assert last_line(err0).startswith(
        "Error: process 1 of 2 did not prove the run's secret (another secret, another "
        "--coordinator, none in time, or not segtrain) and was refused before anything about the run was exchanged; give every "
        "process of the run the same secret in SEGTRAIN_SECRET or in a file named by "
        "SEGTRAIN_SECRET_FILE (process 0 of 2)"
    ), err0
    assert last_line(err1) == (
        "Error: process 0 refused process 1 without proving the run's secret: this process "
        "holds another secret than process 0, or the coordinator it reached is not the run's "
        "(check --coordinator); give every process of the run the same secret in "
        "SEGTRAIN_SECRET or in a file named by SEGTRAIN_SECRET_FILE (process 1 of 2)"
    ), err1
    for text in (out0, err0, out1, err1):
        assert "Traceback" not in text
        assert not [
            word for word in ("sha256", "fingerprint", "gen/discs", *secrets) if word in text
        ]
    assert not (tmp_path / "run").exists()


class Store:
    """A key-value store like JAX's coordination service's: write once, wait to read."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        self.changed = threading.Condition()

    def key_value_set_bytes(self, key: str, value: bytes) -> None:
        with self.changed:
            if key in self.values:
                raise RuntimeError(f"ALREADY_EXISTS: {key}")
            self.values[key] = value
            self.changed.notify_all()

    def blocking_key_value_get_bytes(self, key: str, timeout_in_ms: int) -> bytes:
        with self.changed:
            if not self.changed.wait_for(lambda: key in self.values, timeout_in_ms / 1000):
                raise RuntimeError(f"DEADLINE_EXCEEDED: {key}")
            return self.values[key]


def proving(store: Store, secret: str, process_id: int, coordinator: str) -> Future:
    """``handshake.prove`` in a thread of its own; its future holds what it raised, or None."""
    return ThreadPoolExecutor(1).submit(
        handshake.prove, store, secret.encode(), process_id, 2, coordinator
    )


@pytest.mark.parametrize(
    ("verdict", "message"),
    [
        ("forged", "refused process 1 without proving the run's secret"),
        ("relayed", "refused process 1, though both hold the run's secret: they name another"),
    ],
)
def test_a_proof_made_at_a_rogue_coordinator_is_refused_by_the_real_run(verdict, message):
    """The relay: a rogue coordinator that an honest process 1 reached posts the challenge of a
    real run and takes the honest answer into the real run as its own process 1. Process 0
    refuses it (the proof names another coordinator). The honest process tells a refusal the
    rogue made up from the real one, which says why."""
    real, rogue, P = Store(), Store(), handshake.PREFIX
    process0 = proving(real, SECRET, 0, "10.0.0.1:12345")
    challenge = real.blocking_key_value_get_bytes(P + "challenge", 10_000)
    rogue.key_value_set_bytes(P + "challenge", challenge)
    honest1 = proving(rogue, SECRET, 1, "10.6.6.6:12345")
    answer = rogue.blocking_key_value_get_bytes(P + "answer/1", 10_000)
    real.key_value_set_bytes(P + "answer/1", answer)
    with pytest.raises(RunRefused, match="process 1 of 2 did not prove the run's secret"):
        process0.result(HANG_GUARD)
    relayed = real.values[P + "verdict"]
    rogue.key_value_set_bytes(P + "verdict", relayed if verdict == "relayed" else b"refused")
    with pytest.raises(RunRefused, match=message):
        honest1.result(HANG_GUARD)


@pytest.mark.parametrize(
    ("coordinators", "message"),
    [
        (("10.0.0.1:12345", " 10.0.0.1:12345"), None),
        (("HOST:1", "host:1"), None),
        (("10.0.0.1:12345", "127.0.0.1:12345"), "refused process 1, though both hold the run's"),
    ],
)
def test_processes_prove_the_secret_for_the_coordinator_they_name(coordinators, message):
    store = Store()
    process0, process1 = (proving(store, SECRET, i, coordinators[i]) for i in (0, 1))
    if message is None:
        assert (process0.result(HANG_GUARD), process1.result(HANG_GUARD)) == (None, None)
        assert store.values[handshake.PREFIX + "verdict"].startswith(b"accepted")
        return
    with pytest.raises(RunRefused, match=message):
        process1.result(HANG_GUARD)
    with pytest.raises(RunRefused, match="another --coordinator"):
        process0.result(HANG_GUARD)


@pytest.mark.parametrize("rogue", [1, 0], ids=["rogue-joins-as-process-1", "rogue-listens-first"])
def test_a_program_without_the_secret_is_refused_and_learns_nothing(
    discs, tmp_path, jax_cache, rogue
):
    """A plain JAX program at the coordinator, either side, gets random bytes and a refusal.

    Joined as process 1, it reads its verdict only after process 0 has printed why it ends:
    process 0 keeps the coordination service up until its refused peer has left."""
    coordinator = f"127.0.0.1:{free_port()}"
    honest = 1 - rogue
    env = environment(jax_cache, tmp_path / "tmp", SEGTRAIN_SECRET=SECRET)
    intruder = start(
        [sys.executable, "-c", ROGUE_SCRIPT, coordinator, str(rogue)], env, tmp_path / "rogue",
        stdin=subprocess.PIPE, text=True,
    )  # fmt: skip
    process = start(cli_command(coordinator, tmp_path / "run", honest), env, tmp_path / "honest")
    if rogue == 1:
        wait_for_an_error(tmp_path / "honest", process)
        intruder.stdin.write("read your verdict\n")
        intruder.stdin.flush()
    code, out, err = finish(process, tmp_path / "honest")
    intruder.kill()
    intruder.wait(timeout=HANG_GUARD)
    received = (tmp_path / "rogue.out").read_text()

    assert code == 1, err
    if rogue == 1:
        assert last_line(err).startswith("Error: process 1 of 2 did not prove the run's secret")
        # then a proof it cannot check, and its id (repr quotes bytes holding ' with ")
        assert re.search("^verdict b['\"]refused", received, re.MULTILINE), received
        assert received.endswith("left\n")
    else:
        assert last_line(err).startswith(
            "Error: process 0 at the coordinator did not prove the run's secret (another "
            "secret, or not segtrain); process 1 told it nothing about the run; "
        )
        assert received.startswith("answer/1 b") and received.count("\n") == 1  # b'' or b""
    for text in (out, err, received):
        assert "Traceback" not in text
        assert not [word for word in ("sha256", "fingerprint", "gen/discs", SECRET) if word in text]
    assert not (tmp_path / "run").exists()


def test_several_processes_without_a_secret_refuse_to_start(discs, tmp_path, jax_cache):
    port = free_port()
    process = start(
        cli_command(f"127.0.0.1:{port}", tmp_path / "run", 0),
        environment(jax_cache, tmp_path / "tmp"),
        tmp_path / "p0",
    )
    code, _, err = finish(process, tmp_path / "p0")
    assert code == 1, err
    assert last_line(err).startswith(
        "Error: a data-parallel run of several processes needs a shared secret, so that no "
        "other program can join it: put one in a file ("
    ), err
    assert "SEGTRAIN_SECRET_FILE=run.secret for every process" in last_line(err)
    assert "Traceback" not in err
    assert listening(port) == set()
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({}, "needs a shared secret"),
        ({"SEGTRAIN_SECRET": "   "}, "SEGTRAIN_SECRET is 0 bytes, fewer than 16"),
        ({"SEGTRAIN_SECRET": "short"}, "SEGTRAIN_SECRET is 5 bytes, fewer than 16"),
        ({"SEGTRAIN_SECRET": SECRET, "SEGTRAIN_SECRET_FILE": "x"}, "unset one of them"),
        ({"SEGTRAIN_SECRET_FILE": "/no/such/file"}, "cannot read the secret file"),
        ({"SEGTRAIN_SECRET_FILE": "/dev/zero"}, "holds more than 4096 bytes"),
        ({"SEGTRAIN_SECRET_FILE": "/"}, "cannot read the secret file"),
    ],
)
def test_a_secret_that_cannot_protect_a_run_is_refused(environ, message):
    with pytest.raises(SegtrainError, match=message) as caught:
        handshake.read_secret(environ)
    assert SECRET not in str(caught.value)


def test_the_secret_comes_from_the_variable_or_the_file(tmp_path):
    (tmp_path / "run.secret").write_text(f"  {SECRET}\n")
    from_file = handshake.read_secret({"SEGTRAIN_SECRET_FILE": str(tmp_path / "run.secret")})
    assert from_file == handshake.read_secret({"SEGTRAIN_SECRET": SECRET}) == SECRET.encode()
    # The agreement's digests are keyed: without the secret, a guess of the text confirms nothing.
    keyed = handshake.digest(SECRET.encode(), "dataset", "gen/discs@1.0.0")
    assert keyed != handshake.digest(ANOTHER_SECRET.encode(), "dataset", "gen/discs@1.0.0")
    assert keyed != hashlib.sha256(b"gen/discs@1.0.0").digest()


@pytest.mark.parametrize(
    ("strategy", "coordinator", "bind", "message"),
    [
        ("data-parallel", "127.0.0.1:1", "0.0.0.0", "--bind '0.0.0.0' is not HOST:PORT"),
        ("data-parallel", "127.0.0.1:1", "a:1,b:2", "--bind 'a:1,b:2' is one HOST:PORT"),
        ("data-parallel", "127.0.0.1:\u00b2", None, "is not HOST:PORT"),  # "²".isdigit()
        ("default", None, "127.0.0.1:1", "--bind are options of --strategy data-parallel"),
    ],
)
def test_process_options_that_cannot_work_are_refused(strategy, coordinator, bind, message):
    with pytest.raises(SegtrainError, match=message):
        check_processes(strategy, 2 if coordinator else None, 0, coordinator, bind=bind)
    with pytest.raises(SegtrainError, match="is not a whole number"):
        launcher_settings({"KERAS_DISTRIBUTION_NUM_PROCESSES": "\u00b2"})


def test_a_lost_peer_is_told_apart_from_segtrains_own_errors():
    join = SegtrainError("could not reach the coordination service at h:1; check --coordinator")
    assert failure_message(join, 1, 2) == f"{join} (process 1 of 2)"  # not "lost contact"
    try:
        try:
            raise jax.errors.JaxRuntimeError("UNKNOWN: Gloo all-reduce failed: reset\nmore")
        except jax.errors.JaxRuntimeError as gloo:
            raise RuntimeError("while fitting") from gloo  # as Keras may re-raise it
    except RuntimeError as wrapped:
        said = failure_message(wrapped, 0, 2)
    assert said.startswith("process 0 of 2 lost contact with its peers (while fitting)")
    gather = ValueError("UNKNOWN: Gloo AllGather failed: [pair.cc:538] Read error: reset by peer")
    assert "lost contact" in failure_message(gather, 0, 2)  # how XLA raises it in device_put
    assert "lost contact" not in failure_message(ValueError("bad shape"), 0, 2)
