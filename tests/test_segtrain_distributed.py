"""Data-parallel training: processes on 127.0.0.1 train one run (keras.distribution on JAX).

Every run here is a real process (Keras must load on JAX, and each process of a run is its own
JAX process); the tiny model at 32 px, 8 training rows and a global batch of 4 keep each one
to a few steps. Compiled programs are shared between the runs through JAX's persistent cache.
"""

import csv
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax  # noqa: F401  (the train extra's JAX: data-parallel runs on it; never skipped)
import numpy as np
import pytest
from conftest import make_pairs

import brinelite

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
HANG_GUARD = 240

TRAIN_SCRIPT = """
import json, sys
import numpy as np
import segtrain
out, weights, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
run = segtrain.train("gen/discs", out, verbose=0, **options)
np.savez(weights, *run.model.get_weights(), loss=run.history["loss"],
         val_loss=run.history["val_loss"])
"""


@pytest.fixture(scope="module")
def jax_cache(tmp_path_factory) -> Path:
    """One persistent compilation cache for every process of this module."""
    return tmp_path_factory.mktemp("jax-cache")


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


def environment(jax_cache: Path, tmp: Path, **extra: str) -> dict[str, str]:
    """This test's environment for a child process, with its own temporary folder."""
    tmp.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KERAS_", "JAX_"))}
    return env | {"JAX_COMPILATION_CACHE_DIR": str(jax_cache), "TMPDIR": str(tmp), **extra}


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start ``command`` with stdout in ``log``.out and stderr in ``log``.err."""
    return subprocess.Popen(
        command, env=env, stdout=log.with_suffix(".out").open("w"),
        stderr=log.with_suffix(".err").open("w"),
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


def final_weights(run: Path) -> list[np.ndarray]:
    """The weights of the run's final model.keras (read here, under the tests' backend)."""
    import keras

    return keras.models.load_model(run / "model.keras", compile=False).get_weights()


def test_two_processes_train_one_run_survive_a_lost_peer_and_resume(discs, tmp_path, jax_cache):
    run, alone = tmp_path / "run", tmp_path / "alone"
    coordinator = f"127.0.0.1:{free_port()}"
    env = [environment(jax_cache, tmp_path / f"tmp{i}") for i in (0, 1)]
    logs = [tmp_path / f"process{i}" for i in (0, 1)]

    # Two processes start one run through the CLI; process 1 is killed after an epoch.
    first, second = (
        start(cli_command(coordinator, run, i, "--epochs=100"), env[i], logs[i]) for i in (0, 1)
    )
    wait_for_an_epoch(run, [first, second])
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


def test_processes_with_different_datasets_refuse_to_train(tmp_path, jax_cache):
    """Each node installs into its own cache: one with other bytes under the same name stops all."""
    coordinator = f"127.0.0.1:{free_port()}"
    processes = []
    for i in (0, 1):
        home = tmp_path / f"home{i}"
        pairs = make_pairs(tmp_path / f"discs{i}", count=12, seed=i)  # other discs on node 1
        env = environment(jax_cache, tmp_path / f"tmp{i}", BRINELITE_HOME=str(home))
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
