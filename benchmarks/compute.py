"""4. Compute efficiency and precision of the U-Net-256 train step on this CPU.

Each variant runs in a fresh process (oneDNN and thread settings are read at TensorFlow
import): the seed's U-Net-256 (RMSprop, bce + dice) trains on fixed random batches of 2 and
the achieved GFLOP/s counts 3 x 40.6 GFLOP per image. Two more variants time XLA on the demo's
model (small U-Net, 128 px, batch 1), where its effect differs. Every process first measures
TensorFlow's float32 and bfloat16 matmul GFLOP/s (4096x4096), the ceiling its train step is
compared with (the share of peak); on a CPU without AVX512-BF16/AMX, bfloat16 matmul is
emulated and slow, which is why ``mixed_bfloat16`` cannot pay off there.

A profile then runs the U-Net-256 step under ``ONEDNN_VERBOSE=1`` with oneDNN's graph rewrite
on (``TF_ENABLE_ONEDNN_OPTS=1``, TensorFlow's default only on CPUs with AVX512-VNNI/BF16/AMX)
and sums oneDNN's own time per primitive kind over the timed steps: in float32, and in
``mixed_bfloat16`` where the CPU has bf16 units (elsewhere bf16 is emulated and its profile
says nothing about bf16 hardware). The profile's lines reach the parent through the child's
stdout; C's stdio buffers them, so a few lines near each mark may fall on the wrong side.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from benchmarks.section import Row, Section, met

TRAIN_GFLOP_PER_IMAGE = 3 * 40.6
BATCH = 2
DEMO = {"model": "small", "size": 128, "batch": 1, "steps": 100}
# name -> (environment, options for the child)
VARIANTS = {
    "keras_fp32": ({}, {}),
    "threads_2x1": ({}, {"intra": 2, "inter": 1}),
    "xla_jit": ({}, {"jit": True}),
    "mixed_bfloat16": ({}, {"policy": "mixed_bfloat16"}),
    "bf16_xla_jit": ({}, {"policy": "mixed_bfloat16", "jit": True}),
    "bf16_threads_2x1": ({}, {"policy": "mixed_bfloat16", "intra": 2, "inter": 1}),
    "bf16_batch4": ({}, {"policy": "mixed_bfloat16", "batch": 4}),
    "fp32_onednn_fpmath_bf16": ({"TF_SET_ONEDNN_FPMATH_MODE": "BF16"}, {}),
    "fp32_onednn_opts": ({"TF_ENABLE_ONEDNN_OPTS": "1"}, {}),
    "demo_fp32": ({}, DEMO),
    "demo_xla_jit": ({}, dict(DEMO, jit=True)),
}
PROFILE_ENV = {"ONEDNN_VERBOSE": "1", "TF_ENABLE_ONEDNN_OPTS": "1"}
PROFILE_MARK = "segtrain-benchmark-profile-mark"


def _matmul_gflops(tf, dtype, n: int = 4096, seconds: float = 2.0) -> float:
    a = tf.cast(tf.random.normal((n, n)), dtype)
    b = tf.cast(tf.random.normal((n, n)), dtype)
    tf.matmul(a, b).numpy()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        tf.matmul(a, b).numpy()
        count += 1
    return 2 * n**3 * count / (time.perf_counter() - start) / 1e9


def child(options: dict) -> dict:
    """Runs inside the variant's process: returns its figures."""
    import numpy as np
    import tensorflow as tf

    if "intra" in options:
        tf.config.threading.set_intra_op_parallelism_threads(options["intra"])
        tf.config.threading.set_inter_op_parallelism_threads(options["inter"])
    import keras

    from segtrain.losses import bce_dice_loss, dice
    from segtrain.models import build_model, unet

    # The peak, measured in this process just before its steps: the share of peak compares
    # figures taken under the same outside load, which drifts between processes.
    n, seconds = options.get("matmul_n", 4096), options.get("matmul_s", 1.5)
    out = {"matmul_n": n}
    out["matmul_fp32_gflops"] = _matmul_gflops(tf, tf.float32, n, seconds)
    out["matmul_bf16_gflops"] = _matmul_gflops(tf, tf.bfloat16, n, seconds)
    if "policy" in options:
        keras.mixed_precision.set_global_policy(options["policy"])
    size, batch = options.get("size", 256), options.get("batch", BATCH)
    model = build_model(options["model"], size) if "model" in options else unet(size, 32, 5)
    model.compile(
        optimizer=keras.optimizers.RMSprop(1e-4),
        loss=bce_dice_loss,
        metrics=[dice],
        jit_compile=options.get("jit", False),
    )
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (batch, size, size, 3)).astype(np.float32)
    y = (rng.uniform(0, 1, (batch, size, size, 1)) > 0.5).astype(np.float32)
    for _ in range(2):  # trace / compile
        model.train_on_batch(x, y)
    _mark(options)
    steps, start = 0, time.perf_counter()
    while steps < options.get("steps", 6) and time.perf_counter() - start < options["budget"]:
        model.train_on_batch(x, y)
        steps += 1
    seconds = time.perf_counter() - start
    _mark(options)
    out["img_s"] = steps * batch / seconds
    out["steps"] = steps
    if "model" not in options:  # the FLOP count is the seed's U-Net-256's
        out["gflops"] = out["img_s"] * TRAIN_GFLOP_PER_IMAGE
    out["intra_threads"] = tf.config.threading.get_intra_op_parallelism_threads()
    return out


def _mark(options: dict) -> None:
    """Print the line that bounds a profile's timed steps (profiles only)."""
    if options.get("profile"):
        print(PROFILE_MARK, flush=True)


def _variant(name: str, options: dict, env: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.compute", json.dumps(options)],
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **env),
        capture_output=True,
        text=True,
        check=True,
    )
    lines = proc.stdout.splitlines()
    result = json.loads(next(line for line in reversed(lines) if line.startswith("{")))
    if options.get("profile"):
        result["primitive_ms_per_step"] = primitive_ms(lines, result["steps"])
    return result


def primitive_ms(lines: list[str], steps: int) -> dict[str, float]:
    """oneDNN's milliseconds per step by primitive kind, from the verbose lines between marks.

    A line reads ``onednn_verbose,v1,primitive,exec,cpu,KIND,IMPL,PROP_KIND,...,TIME_MS``;
    the kind is named with its propagation (``convolution backward_weights``).
    """
    marks = [i for i, line in enumerate(lines) if line == PROFILE_MARK]
    totals: collections.Counter[str] = collections.Counter()
    for line in lines[marks[0] : marks[-1]]:
        fields = line.split(",")
        if line.startswith("onednn_verbose,") and fields[2:4] == ["primitive", "exec"]:
            kind = fields[5] if fields[7] in ("", "undef") else f"{fields[5]} {fields[7]}"
            totals[kind] += float(fields[-1])
    return {kind: ms / steps for kind, ms in totals.most_common()}


def cpu_flags() -> dict:
    with open("/proc/cpuinfo") as f:
        flags = f.read().split("flags")[1].split("\n")[0].split()
    return {flag: flag in flags for flag in ("avx2", "avx512f", "avx512_bf16", "amx_bf16")}


def _options(name: str, smoke: bool) -> dict:
    """The child's options for variant ``name`` (a tiny U-Net at 64x64 in smoke runs)."""
    options = dict(VARIANTS[name][1], budget=20 if smoke else 45)
    if smoke:
        options.update(model="tiny", size=64, steps=2, matmul_n=1024, matmul_s=0.5)
    return options


def run(smoke: bool = False) -> dict:
    """Every variant, then the profiles, one process at a time (a smoke run: two at once)."""
    out = {"cpu": cpu_flags(), "cores": os.cpu_count(), "batch": BATCH}
    if smoke:
        out["note"] = "smoke: a tiny U-Net at 64x64, float32 only"
    names = ["keras_fp32"] if smoke else list(VARIANTS)
    with ThreadPoolExecutor(2 if smoke else 1) as pool:
        runs = {name: pool.submit(_variant, name, _options(name, smoke), VARIANTS[name][0])
                for name in names}  # fmt: skip
        profiles = pool.submit(_profiles, out["cpu"], smoke)
        out["variants"] = variants = {name: future.result() for name, future in runs.items()}
        out["profiles"] = profiles.result()
    out["matmul_n"] = variants["keras_fp32"]["matmul_n"]
    for peak in ("matmul_fp32_gflops", "matmul_bf16_gflops"):  # the best seen in the run
        out[peak] = max(result[peak] for result in variants.values())
    for name, result in variants.items():
        base = variants["demo_fp32" if name.startswith("demo_") else "keras_fp32"]
        result["speedup_vs_fp32"] = result["img_s"] / base["img_s"]
        result["bf16_math"] = _bf16_math(*VARIANTS[name])
        if "gflops" in result:
            peak = result["matmul_bf16_gflops" if result["bf16_math"] else "matmul_fp32_gflops"]
            result["share_of_peak"] = result["gflops"] / peak
    return out


def _profiles(cpu: dict, smoke: bool) -> dict:
    """The oneDNN profile of a U-Net step per precision (bf16 only on CPUs with bf16 units)."""
    bf16_units = (cpu["avx512_bf16"] or cpu["amx_bf16"]) and not smoke
    policies = ["float32"] + (["mixed_bfloat16"] if bf16_units else [])
    options = {"profile": True, "steps": 2, "budget": 600, "matmul_n": 256, "matmul_s": 0.1}
    if smoke:
        options.update(model="tiny", size=64)
    return {
        policy: _variant(policy, dict(options, policy=policy), PROFILE_ENV) for policy in policies
    }


def _bf16_math(env: dict, options: dict) -> bool:
    """Whether a variant multiplies in bfloat16 (its share is of the bf16 matmul peak)."""
    return (
        options.get("policy") == "mixed_bfloat16" or env.get("TF_SET_ONEDNN_FPMATH_MODE") == "BF16"
    )


def profile_summary(profile: dict, batch: int, kinds: int = 5) -> str:
    """A profile's top primitive kinds by share of oneDNN's time, and that time per step."""
    ms = profile["primitive_ms_per_step"]
    total = sum(ms.values())
    if not total:
        return "no oneDNN primitive ran"
    top = ", ".join(f"{kind} {t / total:.0%}" for kind, t in list(ms.items())[:kinds])
    step_s = batch / profile["img_s"]
    return f"{top}; {total / 1e3:.2f} s of primitives per {step_s:.2f} s step"


def _share_rows(co: dict) -> list[Row]:
    """U-Net-256's share of the matmul peak measured in the same run, per precision."""
    out = []
    for name, precision in (("keras_fp32", "float32"), ("mixed_bfloat16", "mixed_bfloat16")):
        variant = co["variants"].get(name, {})
        if "share_of_peak" not in variant:
            continue
        peak = variant["matmul_bf16_gflops" if variant["bf16_math"] else "matmul_fp32_gflops"]
        out.append(
            Row(
                f"U-Net-256 share of peak, {precision}",
                f"{variant['share_of_peak']:.0%} ({variant['gflops']:.0f} of {peak:.0f} "
                f"GFLOP/s, {variant['img_s']:.2f} img/s)",
            )
        )
    return out


def rows(co: dict) -> list[Row]:
    """The fp32 step, shares of peak, profiles, the best variant (its target: bf16 CPUs), XLA."""
    variants = co["variants"]
    base = variants["keras_fp32"]
    flops = f"{base['gflops']:.0f} GFLOP/s, " if "gflops" in base else ""
    out = [
        Row(
            "U-Net-256 train step, Keras fp32",
            f"{flops}{base['img_s']:.2f} img/s ({co.get('matmul_n', 2048)}² matmul: fp32 "
            f"{co['matmul_fp32_gflops']:.0f} GFLOP/s, bf16 {co['matmul_bf16_gflops']:.0f})",
        )
    ]
    out += _share_rows(co)
    out += [
        Row(
            f"U-Net-256 oneDNN time per step by primitive, {policy} (verbose profile)",
            profile_summary(profile, co["batch"]),
        )
        for policy, profile in co.get("profiles", {}).items()
    ]
    seed = {k: v for k, v in variants.items() if not k.startswith("demo_")}
    best = max(seed, key=lambda k: seed[k]["img_s"])
    bf16 = co["cpu"]["avx512_bf16"] or co["cpu"]["amx_bf16"]
    others = ", ".join(f"{k} {v['speedup_vs_fp32']:.2f}x" for k, v in seed.items() if k != best)
    out.append(
        Row(
            "Best U-Net-256 variant vs Keras fp32",
            f"{seed[best]['speedup_vs_fp32']:.2f}x ({best}); {others}",
            ">= 1.6x (bf16 CPUs)",
            met(seed[best]["speedup_vs_fp32"] >= 1.6) if bf16 else "n/a: no bf16 here",
        )
    )
    if "demo_xla_jit" in variants:
        demo = variants["demo_xla_jit"]
        out.append(
            Row(
                "XLA on the demo's model (small 128px batch 1) vs fp32",
                f"{demo['speedup_vs_fp32']:.2f}x ({demo['img_s']:.1f} vs "
                f"{variants['demo_fp32']['img_s']:.1f} img/s)",
            )
        )
    return out


EXPLAIN = """\
4. **Compute** (`--only compute`). The seed's U-Net-256 (RMSprop, bce + dice), batch 2 of
   fixed random data, 6 steps after 2 warm-up steps, one fresh process per variant: Keras
   defaults fp32, intra/inter-op threads 2/1, XLA `jit_compile=True`, the `mixed_bfloat16`
   policy, and with it XLA, threads 2/1 and batch 4, and fp32 with oneDNN's bf16 math mode
   (`TF_SET_ONEDNN_FPMATH_MODE=BF16`), and fp32 with oneDNN's graph rewrite forced on
   (`TF_ENABLE_ONEDNN_OPTS=1`, TensorFlow's default only on CPUs with AVX512-VNNI/BF16/AMX);
   each stops after 45 s. GFLOP/s = images/s x 3 x 40.6
   GFLOP. Each process first measures TensorFlow's 4096x4096 float32 and bfloat16 matmul
   GFLOP/s (1.5 s each); a variant's share of peak is its GFLOP/s over its own process's peak
   of the precision it multiplies in, so both figures share the outside load of the moment
   (the matmul figures in the first row are the best seen in the run). Speed-ups compare
   separate processes, so the load's drift between them shows in them. The demo's model
   (small U-Net, 128 px, batch 1, 100 steps) is timed with and without XLA too.
   A profile runs 2 steps of U-Net-256 under `ONEDNN_VERBOSE=1` with the graph rewrite on and
   sums oneDNN's own time per primitive kind (convolution by direction, reorders between
   memory layouts, pooling, ...): in float32, and in `mixed_bfloat16` on CPUs with bf16 units.
   Inter-op parallelism can run two primitives at once, so their sum may exceed the step.
"""

LIMITS_BF16 = """
- **Compute (4).** This CPU has bf16 units (avx512_bf16/amx_bf16), so `--precision auto`
  picks `mixed_bfloat16`; U-Net-256 trained {bf16:.2f}x as fast as in float32. It reaches
  {share_bf16:.0%} of the bf16 matmul peak where float32 reaches {share_fp32:.0%} of its own
  (each against the peak measured in its own process). Where a bf16 step's oneDNN time goes
  (the profile rows): {profile}. The rest of the step (BatchNormalization, ReLU, upsampling,
  concatenation, the casts between float32 and bf16) runs outside oneDNN and gains nothing
  from bf16 units. Tried to lift it (speed against plain `mixed_bfloat16` in another process):
  {tried}. {verdict}
"""

LIMITS_FP32 = """
- **Compute (4).** This CPU has no AVX512-BF16/AMX: bfloat16 has no native units (its matmul
  runs at about the fp32 rate) and the U-Net under `mixed_bfloat16` trained at {bf16:.2f}x, so
  `--precision auto` picks float32 here (mixed_bfloat16 only where /proc/cpuinfo lists
  avx512_bf16 or amx_bf16). TensorFlow leaves oneDNN's graph rewrite off on such CPUs;
  turning it on (`TF_ENABLE_ONEDNN_OPTS=1`) trained U-Net-256 at {opts} the default's speed.
  Where a float32 step's oneDNN time goes, with the rewrite on: {profile}.
"""

BF16_LIFTS = {
    "bf16_xla_jit": "XLA",
    "bf16_threads_2x1": "threads 2/1",
    "bf16_batch4": "batch 4 (per image)",
}


def _profile_text(co: dict, policy: str) -> str:
    profile = co.get("profiles", {}).get(policy)
    return "not profiled" if profile is None else profile_summary(profile, co["batch"], 3)


def notes(co: dict) -> list[str]:
    """Why bf16 pays (or not) on this CPU, where the step's time goes, what was tried."""
    variants = co["variants"]
    if not {"keras_fp32", "mixed_bfloat16"} <= set(variants):
        return []
    bf16 = variants["mixed_bfloat16"]
    if not (co["cpu"]["avx512_bf16"] or co["cpu"]["amx_bf16"]):
        opts = variants.get("fp32_onednn_opts", {}).get("speedup_vs_fp32")
        return [
            LIMITS_FP32.format(
                bf16=bf16["speedup_vs_fp32"],
                opts="(not measured)" if opts is None else f"{opts:.2f}x",
                profile=_profile_text(co, "float32"),
            )
        ]
    if "share_of_peak" not in bf16:
        return []
    lifts = {
        label: variants[name]["img_s"] / bf16["img_s"]
        for name, label in BF16_LIFTS.items()
        if name in variants
    }
    if "fp32_onednn_fpmath_bf16" in variants:
        lifts["float32 with oneDNN bf16 math"] = (
            variants["fp32_onednn_fpmath_bf16"]["img_s"] / bf16["img_s"]
        )
    tried = ", ".join(f"{label} {ratio:.2f}x" for label, ratio in lifts.items()) or "nothing"
    better = [label for label, ratio in lifts.items() if ratio >= 1.05]
    verdict = (
        f"Only {', '.join(better)} measured better (by 5% or more) here; one noisy run is not "
        "enough to change segtrain's choice."
        if better
        else "None measured better by 5% or more, so segtrain keeps plain `mixed_bfloat16`."
    )
    return [
        LIMITS_BF16.format(
            bf16=bf16["speedup_vs_fp32"],
            profile=_profile_text(co, "mixed_bfloat16"),
            share_bf16=bf16["share_of_peak"],
            share_fp32=variants["keras_fp32"].get("share_of_peak", 0),
            tried=tried,
            verdict=verdict,
        )
    ]


SECTION = Section("4", rows, EXPLAIN, notes)


if __name__ == "__main__":
    print(json.dumps(child(json.loads(sys.argv[1]))))
