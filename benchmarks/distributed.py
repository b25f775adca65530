"""7. Backends and processes: TensorFlow against JAX on CPU, and 2 data-parallel processes vs 1.

Each measurement runs in fresh processes (the backend is chosen when Keras is imported), which
share JAX's compiled programs (``data.jax_cache``):

- ``backends``: the demo's small U-Net at 128 px (batch 1) and the seed's U-Net-256 (batch 2)
  train on fixed random batches through ``segtrain.models.build_model`` (segtrain's compile:
  XLA under JAX, TensorFlow's graph without XLA), img/s over a few steps after 2 warm-up steps.
- ``processes``: the small U-Net at 128 px at one global batch of 4: one process (batch 4)
  against two processes on 127.0.0.1 (batch 2 each, ``segtrain.distributed.start``: Keras'
  ``DataParallel`` over Gloo), img/s of the global batches over the timed steps. On this
  2-core machine both processes share the cores the single one has to itself, so this shows
  the cost of the exchange, not a speed-up; the losses show they train the same model.

A smoke run trains the tiny U-Net at 32 px for 2 steps, runs both backends side by side and
reuses the JAX one as the single process (the same options): its figures only show that the
code runs.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time

from benchmarks import data
from benchmarks.section import Row, Section, met

MODELS = {"small": (128, 1), "unet256": (256, 2)}  # model -> (size, batch)
STEPS = {"small": 30, "unet256": 4}
GLOBAL_BATCH = 4
PROCESS_STEPS = 20
# Both sections' smoke child: the single process at the global batch, under either backend.
SMOKE = {"model": "tiny", "size": 32, "batch": GLOBAL_BATCH, "steps": 2}
RUN_SECRET = secrets.token_hex(32)  # the data-parallel children's shared secret


class _Clock:
    """Times the steps after the warm-up ones of one ``fit`` (a Keras callback's hooks)."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.stamps = warmup, []

    def hooks(self, keras):
        clock = self

        class Hooks(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                clock.stamps.append(time.perf_counter())

        return Hooks()

    def seconds(self) -> float:
        return self.stamps[-1] - self.stamps[self.warmup - 1]


def child(options: dict) -> dict:
    """Runs in the measured process: trains ``steps`` + 2 steps and returns img/s and loss."""
    import numpy as np

    from segtrain import distributed, runtime

    processes, process_id = options.get("processes", 1), options.get("process_id", 0)
    if options.get("data_parallel"):
        distributed.start(processes, process_id, options.get("coordinator"))
    keras = runtime.import_keras()
    runtime.set_seed(0)
    from segtrain.models import build_model

    size, batch, steps = options["size"], options["batch"], options["steps"]
    model = build_model(options["model"], size, precision="float32", lr=1e-4)
    rng = np.random.default_rng(0)  # every process draws the global batch, keeps its share
    x = rng.uniform(0, 1, (batch * processes, size, size, 3)).astype(np.float32)
    y = (rng.uniform(0, 1, (batch * processes, size, size, 1)) > 0.5).astype(np.float32)
    share = slice(process_id * batch, (process_id + 1) * batch)
    x, y = np.tile(x[share], (steps + 2, 1, 1, 1)), np.tile(y[share], (steps + 2, 1, 1, 1))
    clock = _Clock(warmup=2)
    history = model.fit(
        x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0, callbacks=[clock.hooks(keras)]
    )
    return {
        "img_s": steps * batch * processes / clock.seconds(),
        "steps": steps,
        "loss": float(history.history["loss"][-1]),
        "backend": keras.config.backend(),
    }


def _spawn(options: dict, backend: str) -> subprocess.Popen:
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3", **data.jax_cache())
    env.pop("SEGTRAIN_SECRET_FILE", None)
    env["SEGTRAIN_SECRET"] = RUN_SECRET  # the two processes' run needs one
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.distributed", json.dumps(options)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _result(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=1800)
    if process.returncode:
        raise RuntimeError(f"benchmark child failed: {err[-2000:]}")
    return json.loads(out.strip().splitlines()[-1])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _results(jobs: list[tuple[dict, str]], together: bool) -> list[dict]:
    """Runs one child per (options, backend), one after the other or all ``together``."""
    if together:
        return [_result(process) for process in [_spawn(*job) for job in jobs]]
    return [_result(_spawn(*job)) for job in jobs]


def backends(smoke: bool) -> dict:
    """img/s of each U-Net's train step under TensorFlow and under JAX."""
    cases = [SMOKE] if smoke else [
        {"model": model, "size": size, "batch": batch, "steps": STEPS[model]}
        for model, (size, batch) in MODELS.items()
    ]  # fmt: skip
    out = {}
    for options in cases:
        model, size, batch = options["model"], options["size"], options["batch"]
        names = ("tensorflow", "jax")
        runs = _results([(options, backend) for backend in names], together=smoke)
        out[model] = dict(zip(names, runs, strict=True))
        out[model]["size"], out[model]["batch"] = size, batch
        out[model]["jax_vs_tensorflow"] = (
            out[model]["jax"]["img_s"] / out[model]["tensorflow"]["img_s"]
        )
    return out


def processes(smoke: bool, one: dict | None = None) -> dict:
    """One process at the global batch against two data-parallel processes sharing it.

    ``one`` is the single process's run when it was measured already.
    """
    model, size = (SMOKE["model"], SMOKE["size"]) if smoke else ("small", 128)
    base = {"model": model, "size": size, "steps": SMOKE["steps"] if smoke else PROCESS_STEPS}
    coordinator = f"127.0.0.1:{_free_port()}"
    pair = [
        (
            {
                **base,
                "batch": GLOBAL_BATCH // 2,
                "data_parallel": True,
                "processes": 2,
                "process_id": i,
                "coordinator": coordinator,
            },
            "jax",
        )
        for i in (0, 1)
    ]
    if one is None:
        (one,) = _results([({**base, "batch": GLOBAL_BATCH}, "jax")], together=False)
    two = _results(pair, together=True)
    return {
        "model": model,
        "size": size,
        "global_batch": GLOBAL_BATCH,
        "one_process": one,
        "two_processes": two[0],
        "two_vs_one": two[0]["img_s"] / one["img_s"],
        "same_loss": two[0]["loss"] == two[1]["loss"],
        "loss_rel_diff": abs(two[0]["loss"] - one["loss"]) / one["loss"],
    }


def run(smoke: bool = False) -> dict:
    """The section's measurements: TensorFlow against JAX per model, then 2 processes vs 1."""
    out = {"backends": backends(smoke), "cores": os.cpu_count()}
    one = out["backends"][SMOKE["model"]]["jax"] if smoke else None  # SMOKE: the same child
    out["processes"] = processes(smoke, one=one)
    return out


def rows(di: dict) -> list[Row]:
    """JAX against TensorFlow per model, then two data-parallel processes against one."""
    out = [
        Row(
            f"JAX vs TensorFlow train step, {model} {b['size']}px batch {b['batch']}",
            f"{b['jax_vs_tensorflow']:.2f}x ({b['jax']['img_s']:.2f} vs "
            f"{b['tensorflow']['img_s']:.2f} img/s)",
        )
        for model, b in di["backends"].items()
    ]
    pr = di["processes"]
    out.append(
        Row(
            f"2 data-parallel processes vs 1, {pr['model']} {pr['size']}px, global batch "
            f"{pr['global_batch']}, {di['cores']} cores",
            f"{pr['two_vs_one']:.2f}x ({pr['two_processes']['img_s']:.2f} vs "
            f"{pr['one_process']['img_s']:.2f} img/s); loss within "
            f"{pr['loss_rel_diff']:.0e} of one process's",
            "same model (loss within 1e-3), not speed",
            met(pr["same_loss"] and pr["loss_rel_diff"] < 1e-3),
        )
    )
    return out


EXPLAIN = """\
7. **Backends and processes** (`--only distributed`). Each U-Net trains on fixed random
   batches in a fresh process per backend, as segtrain compiles it (JAX: XLA; TensorFlow: its
   graph, XLA off on CPU): the small U-Net at 128 px batch 1 (30 steps), U-Net-256 batch 2
   (4 steps), after 2 warm-up steps. Then the small U-Net at a global batch of 4: one JAX
   process at batch 4 against two `--strategy data-parallel` processes on 127.0.0.1 at batch
   2 each (Keras' `DataParallel`, gradients summed over Gloo/TCP), 20 steps; img/s counts the
   global batches. The two processes share the 2 cores the single one has alone and exchange
   every gradient through the loopback, so the ratio measures that overhead: it proves the
   processes train one model (their losses agree with each other bit for bit and with the
   single process's), not a speed-up. A speed-up needs a second machine: two nodes that each
   reach the other's port (process 0's `--coordinator` and Gloo's own ports), the dataset
   installed on each from the team registry, and a network fast enough for one exchange of
   the gradients per step (U-Net-256: 34.6 M float32 parameters, ~138 MB each way per step;
   the small U-Net: 2.2 M, ~9 MB): on 1 Gbit/s Ethernet (~125 MB/s) that is about a second
   per step for U-Net-256, against ~4 s of compute for a batch of 2 on such a 2-core node, so
   two nodes would gain there, and more with bigger per-process batches.
"""

TORCH_BACKEND = """
- **Keras on torch (7).** Not measured by this run: measured by hand on 2026-12-06 on this
  AMD EPYC machine (float32, a fixed random batch, `train_on_batch`, median of 3-5 steps after
  a warm-up, other jobs running), the small U-Net at 128 px batch 1 took 0.118 s per step on
  TensorFlow, 0.25 s on JAX and 2.07 s on torch (17.6x TensorFlow's): Keras on torch runs the
  step eagerly on CPU, op by op. So segtrain refuses `KERAS_BACKEND=torch` in one line naming
  tensorflow and jax; to train with PyTorch, feed it directly with `Dataset.to_torch`
  (section 9; [pytorch.md](pytorch.md), [segtrain.md](segtrain.md)).
"""

SECTION = Section("7", rows, EXPLAIN, lambda result: [TORCH_BACKEND])


if __name__ == "__main__":
    print(json.dumps(child(json.loads(sys.argv[1]))))
