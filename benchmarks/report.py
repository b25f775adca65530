"""Render ``docs/benchmarks.md`` from the results: one table, then what each figure means."""

from __future__ import annotations

from typing import Any

HEADER = """# Benchmarks

Measured by `make bench` (`python -m benchmarks.run`) on {cores} cores ({cpu}, {flags}; Python
{python}), {date}{smoke}. The machine is shared and noisy: compare the figures measured side by
side in the same run (the ratios), not the absolute rates across runs. Reproduce one section
with `python -m benchmarks.run --only NAME`; `make bench-smoke` runs everything at toy sizes.
{earlier}
| # | Figure | This machine | Target | Met? |
|---|---|---|---|---|
"""


def _met(ok: bool | None) -> str:
    return "n/a" if ok is None else ("yes" if ok else "**no**")


def _rows(r: dict[str, Any]) -> list[tuple]:
    rows = []
    if "feeding" in r:
        for c in r["feeding"]["cases"]:
            target = 0.99 if c["model"] == "unet256" else 0.97
            rows.append(
                (
                    "1",
                    f"Feeding ratio b/a, {c['model']} {c['size']}px batch {c['batch']}, "
                    f"{c.get('precision', 'float32')}",
                    f"{c['ratio']:.3f} ({c['to_keras_img_s']:.2f} vs {c['numpy_img_s']:.2f} img/s)",
                    f">= {target}",
                    _met(c["ratio"] >= target),
                )
            )
    if "loader" in r:
        lo = r["loader"]
        rows.append(
            (
                "2",
                "Loader, 2 workers vs 1 (seed processing)",
                f"{lo['speedup_2_vs_1']:.2f}x ({lo['workers2_samples_s']:.0f} vs "
                f"{lo['workers1_samples_s']:.0f} samples/s; plain loop "
                f"{lo['sequential_samples_s']:.0f})",
                ">= 1.7x",
                _met(lo["speedup_2_vs_1"] >= 1.7),
            )
        )
        rows.append(
            (
                "2",
                "Image cache, later epoch vs first (seed processing)",
                f"{lo['cache_speedup']:.2f}x",
                ">= 5x",
                _met(lo["cache_speedup"] >= 5),
            )
        )
        rows.append(
            (
                "2",
                "Image cache, later epoch vs first (no processing)",
                f"{lo['cache_no_processing_speedup']:.2f}x",
                ">= 5x",
                _met(lo["cache_no_processing_speedup"] >= 5),
            )
        )
        rows += _prepared_rows(lo)
    if "install" in r:
        ins = r["install"]
        for kind in ("http", "file"):
            k = ins[kind]
            rows.append(
                (
                    "3",
                    f"Install {ins['archive_mb']:.0f} MB from {kind}, progress on, vs floor",
                    f"{k['ratio']:.2f}x ({k['ours_s']:.2f} s vs {k['floor_s']:.2f} s)",
                    "<= 1.25x",
                    _met(k["ratio"] <= 1.25),
                )
            )
        rows.append(
            (
                "3",
                "Install peak RSS, big vs small archive",
                f"{ins['http']['peak_rss_mb']:.0f} MB vs {ins['small_archive_peak_rss_mb']:.0f} MB "
                f"({ins['small_archive_mb']:.0f} MB archive)",
                "flat",
                _met(ins["http"]["peak_rss_mb"] <= 1.2 * ins["small_archive_peak_rss_mb"] + 20),
            )
        )
    if "compute" in r:
        rows += _compute_rows(r["compute"])
    if "scaling" in r:
        sc = r["scaling"]
        big = max((k for k in sc if k.startswith("rows_")), key=lambda k: int(k[5:]))
        small = min((k for k in sc if k.startswith("rows_")), key=lambda k: int(k[5:]))
        rows.append(
            (
                "5",
                f"load_dataset, {int(big[5:]):,} rows",
                f"{sc[big]['load_s']:.2f} s ({sc[small]['load_s']:.3f} s at {int(small[5:]):,})",
                "< 1 s",
                _met(sc[big]["load_s"] < 1),
            )
        )
        rows.append(
            (
                "5",
                "Memory per row (10x rows)",
                f"{sc[big]['bytes_per_row']:.0f} B/row ({sc[small]['bytes_per_row']:.0f} B/row)",
                "proportional to rows",
                _met(sc[big]["bytes_per_row"] < 2 * sc[small]["bytes_per_row"]),
            )
        )
        rows.append(
            (
                "5",
                f"create_folds / shuffle one epoch, {sc['rows']:,} rows",
                f"{sc['create_folds_s'] * 1e3:.1f} ms / {sc['shuffle_epoch_s'] * 1e3:.1f} ms",
                "-",
                "n/a",
            )
        )
    if "quality" in r:
        rows += _quality_rows(r["quality"])
    if "distributed" in r:
        rows += _distributed_rows(r["distributed"])
    if "multiclass" in r:
        rows += _multiclass_rows(r["multiclass"])
    if "torch_loader" in r:
        rows += _torch_rows(r["torch_loader"])
    return rows


def _torch_rows(tl: dict[str, Any]) -> list[tuple]:
    """to_torch in a DataLoader: against a hand-written OpenCV Dataset, and feeding smp."""
    lo, fe = tl["loader"], tl["feeding"]
    return [
        (
            "9",
            f"to_torch + DataLoader(2 workers), later epoch vs an OpenCV torch Dataset, "
            f"{lo['size']}px",
            f"{lo['to_torch_vs_opencv']:.2f}x ({lo['to_torch_samples_s']:.0f} vs "
            f"{lo['opencv_dataset_samples_s']:.0f} samples/s; first epoch "
            f"{lo['to_torch_first_epoch_samples_s']:.0f})",
            ">= 3x",
            _met(lo["to_torch_vs_opencv"] >= 3),
        ),
        (
            "9",
            f"Feeding ratio, {fe['model']} {fe['size']}px batch {fe['batch']}: to_torch vs "
            "tensors in memory",
            f"{fe['ratio']:.3f} ({fe['to_torch_img_s']:.2f} vs {fe['memory_img_s']:.2f} img/s)",
            ">= 0.99",
            _met(fe["ratio"] >= 0.99),
        ),
    ]


def _prepared_rows(lo: dict[str, Any]) -> list[tuple]:
    vs_brine = lo["prepared_later_vs_brine_style"]
    return [
        (
            "2",
            "Prepared cache, epochs 2+ vs Brine-style loop (seed processing)",
            f"{vs_brine:.2f}x ({lo['prepared_later_epoch_samples_s']:.0f} vs "
            f"{lo['brine_style_samples_s']:.0f} samples/s)",
            ">= 3x",
            _met(vs_brine >= 3),
        ),
        (
            "2",
            "Prepared cache, epochs 2+ vs its epoch 1",
            f"{lo['prepared_later_vs_first']:.2f}x (epoch 1: "
            f"{lo['prepared_first_epoch_samples_s']:.0f} samples/s, "
            f"{lo['prepared_first_vs_brine_style']:.2f}x Brine-style; "
            f"{lo['prepared_cache_mib']:.0f} MiB held)",
            "-",
            "n/a",
        ),
    ]


def _distributed_rows(di: dict[str, Any]) -> list[tuple]:
    rows = [
        (
            "7",
            f"JAX vs TensorFlow train step, {model} {b['size']}px batch {b['batch']}",
            f"{b['jax_vs_tensorflow']:.2f}x ({b['jax']['img_s']:.2f} vs "
            f"{b['tensorflow']['img_s']:.2f} img/s)",
            "-",
            "n/a",
        )
        for model, b in di["backends"].items()
    ]
    pr = di["processes"]
    rows.append(
        (
            "7",
            f"2 data-parallel processes vs 1, {pr['model']} {pr['size']}px, global batch "
            f"{pr['global_batch']}, {di['cores']} cores",
            f"{pr['two_vs_one']:.2f}x ({pr['two_processes']['img_s']:.2f} vs "
            f"{pr['one_process']['img_s']:.2f} img/s); loss within "
            f"{pr['loss_rel_diff']:.0e} of one process's",
            "same model (loss within 1e-3), not speed",
            _met(pr["same_loss"] and pr["loss_rel_diff"] < 1e-3),
        )
    )
    return rows


def _multiclass_rows(mc: dict[str, Any]) -> list[tuple]:
    """CamVid mIoU: segtrain's CLI and a hand-written Keras baseline, same minutes."""
    budget = f"{mc['budget_s'] / 60:.0f} min"
    ours, theirs, majority = mc["segtrain"], mc["baseline"], mc["majority"]
    gain = ours["miou"] - theirs["miou"]
    return [
        (
            "8",
            f"CamVid {budget}: segtrain (small {mc['size']}px, its defaults)",
            f"mIoU {ours['miou']:.3f}, pixel accuracy {ours['pixel_accuracy']:.3f}",
            "-",
            "n/a",
        ),
        (
            "8",
            f"CamVid {budget}: hand-written softmax U-Net (plain Keras)",
            f"mIoU {theirs['miou']:.3f}, pixel accuracy {theirs['pixel_accuracy']:.3f} "
            f"({theirs['epochs']} epochs)",
            "-",
            "n/a",
        ),
        (
            "8",
            f"CamVid majority class everywhere ({majority['class']})",
            f"mIoU {majority['miou']:.3f}, pixel accuracy {majority['pixel_accuracy']:.3f}",
            "-",
            "n/a",
        ),
        ("8", "segtrain vs hand-written, same budget: mIoU gain", f"{gain:+.3f}", ">= +0.05",
         _met(gain >= 0.05)),
    ]  # fmt: skip


def _per_class_table(mc: dict[str, Any]) -> str:
    """Per-class IoU of the three CamVid predictors, one row per class."""
    names = list(mc["segtrain"]["per_class_iou"])
    lines = ["| class | segtrain | hand-written | majority |", "|---|---|---|---|"]
    for name in names:
        cells = [
            mc[who]["per_class_iou"].get(name, 0.0) for who in ("segtrain", "baseline", "majority")
        ]
        lines.append(f"| {name} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    return "\n".join(lines)


def _share_rows(co: dict[str, Any]) -> list[tuple]:
    """U-Net-256's share of the matmul peak measured in the same run, per precision."""
    rows = []
    for name, precision in (("keras_fp32", "float32"), ("mixed_bfloat16", "mixed_bfloat16")):
        variant = co["variants"].get(name, {})
        if "share_of_peak" not in variant:
            continue
        peak = variant["matmul_bf16_gflops" if variant["bf16_math"] else "matmul_fp32_gflops"]
        rows.append(
            (
                "4",
                f"U-Net-256 share of peak, {precision}",
                f"{variant['share_of_peak']:.0%} ({variant['gflops']:.0f} of {peak:.0f} "
                f"GFLOP/s, {variant['img_s']:.2f} img/s)",
                "-",
                "n/a",
            )
        )
    return rows


def _compute_rows(co: dict[str, Any]) -> list[tuple]:
    variants = co["variants"]
    base = variants["keras_fp32"]
    flops = f"{base['gflops']:.0f} GFLOP/s, " if "gflops" in base else ""
    rows = [
        (
            "4",
            "U-Net-256 train step, Keras fp32",
            f"{flops}{base['img_s']:.2f} img/s ({co.get('matmul_n', 2048)}² matmul: fp32 "
            f"{co['matmul_fp32_gflops']:.0f} GFLOP/s, bf16 {co['matmul_bf16_gflops']:.0f})",
            "-",
            "n/a",
        )
    ]
    rows += _share_rows(co)
    rows += [
        (
            "4",
            f"U-Net-256 oneDNN time per step by primitive, {policy} (verbose profile)",
            _profile_summary(profile, co["batch"]),
            "-",
            "n/a",
        )
        for policy, profile in co.get("profiles", {}).items()
    ]
    seed = {k: v for k, v in variants.items() if not k.startswith("demo_")}
    best = max(seed, key=lambda k: seed[k]["img_s"])
    bf16 = co["cpu"]["avx512_bf16"] or co["cpu"]["amx_bf16"]
    others = ", ".join(f"{k} {v['speedup_vs_fp32']:.2f}x" for k, v in seed.items() if k != best)
    rows.append(
        (
            "4",
            "Best U-Net-256 variant vs Keras fp32",
            f"{seed[best]['speedup_vs_fp32']:.2f}x ({best}); {others}",
            ">= 1.6x (bf16 CPUs)",
            _met(seed[best]["speedup_vs_fp32"] >= 1.6) if bf16 else "n/a: no bf16 here",
        )
    )
    if "demo_xla_jit" in variants:
        demo = variants["demo_xla_jit"]
        rows.append(
            (
                "4",
                "XLA on the demo's model (small 128px batch 1) vs fp32",
                f"{demo['speedup_vs_fp32']:.2f}x ({demo['img_s']:.1f} vs "
                f"{variants['demo_fp32']['img_s']:.1f} img/s)",
                "-",
                "n/a",
            )
        )
    return rows


def _profile_summary(profile: dict[str, Any], batch: int, kinds: int = 5) -> str:
    """A profile's top primitive kinds by share of oneDNN's time, and that time per step."""
    ms = profile["primitive_ms_per_step"]
    total = sum(ms.values())
    if not total:
        return "no oneDNN primitive ran"
    top = ", ".join(f"{kind} {t / total:.0%}" for kind, t in list(ms.items())[:kinds])
    step_s = batch / profile["img_s"]
    return f"{top}; {total / 1e3:.2f} s of primitives per {step_s:.2f} s step"


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


def _quality_rows(qu: dict[str, Any]) -> list[tuple]:
    ours, theirs, half = qu["runs"][:3]
    rows = [
        (
            "6",
            f"{_duration(run['budget_s'])}: {run['who']} ({run['options']}, {run['precision']})",
            f"dice {run['dice']:.3f}, IoU {run['iou']:.3f} ({run['epochs']} epochs); "
            f"all-foreground dice {run['all_foreground_dice']:.3f}",
            "-",
            "n/a",
        )
        for run in qu["runs"]
    ]
    rows.append(
        (
            "6",
            "segtrain vs newcomer, same budget: dice gain",
            f"{qu['dice_gain']:+.3f}",
            ">= +0.02",
            _met(qu["dice_gain"] >= 0.02),
        )
    )
    rows.append(
        (
            "6",
            "segtrain at half the budget vs newcomer at the full one",
            f"{qu['half_budget_dice_gain']:+.3f} dice",
            ">= 0 (newcomer's dice in half the time)",
            _met(qu["half_budget_dice_gain"] >= 0),
        )
    )
    return rows


EXPLAIN = """
## What each figure is

1. **Feeding ratio** (`--only feeding`). The same compiled model, at the precision
   `--precision auto` picks on this CPU (the row names it), trains the same number of steps
   from (a) numpy arrays already processed in memory and (b) `to_keras` with the seed's
   processing in two stages: the deterministic part (decode, channels, mask, resize) from the
   preprocessed cache, filled by one epoch before timing, and the augmentation on every sample
   (2 workers). A callback timestamps every batch and only batches after a warm-up count, so
   tracing and the epoch-start stall of `fit` on shuffled numpy arrays are excluded. Sources
   alternate (a, b, a, b, a, b: 5 timed steps each for U-Net-256, 9 for the small model);
   ratio = the median over the 3 rounds of b / a (the rates shown are the medians of each).
2. **Loader throughput** (`--only loader`). Samples/s of a full epoch of `to_keras` batches
   (batch 8, seed processing with augmentation at 256, membrane 512x512 PNG x8 = 240 rows),
   1 against 2 workers, best of 5 alternating epochs, next to a plain one-thread loop that
   decodes and processes the same files. OpenCV's own thread pool keeps its default except
   while `to_keras` makes a batch with 2 workers (it holds the pool at 1 then). The image-cache
   rows compare the first epoch of `cache_images=True` (2 workers) with the best of the next
   three, with the seed processing and without any processing. The prepared-cache rows feed
   `to_keras(prepare=..., augment=..., cache="memory")` with the seed's processing split in
   two (`benchmarks.loader.seed_stages`: prepare = the validation processing, augment = the
   seed's augmentation on the prepared 256 px sample): its first epoch (decode + prepare +
   augment, filling the cache) and the best of 3 later ones (augment only), the later ones
   alternating with a Brine-style generator that decodes, processes (both stages) and stacks
   every batch in one thread.
3. **Install throughput** (`--only install`). A ~200 MB archive of generated smooth 1024x1024
   PNG pairs served by `python -m http.server` on 127.0.0.1, or read from a local file.
   Floor: `curl -s -o` + `sha256sum` + `tar -xzf` (local: `sha256sum` + `tar -xzf`), timed
   together. Ours: `python -m brinelite install SOURCE --sha256 ...` in a fresh process
   (interpreter start and imports included; `python_import_brinelite_cli_s` in results.json
   shows that share), verification on. The progress bar draws only on a TTY, so these runs
   get a pseudo-terminal from `script -qc`; `http_no_tty_s` is the same install without one.
   Peak RSS from `/usr/bin/time -f %M` (whole process tree); a ~6 MB archive shows
   whether it grows with archive size.
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
5. **Scaling** (`--only scaling`). `load_dataset` of generated manifest.json + rows.csv
   (10k, 100k rows, the manifest listing every file with size and sha256 as an installed one
   does; the image files themselves do not exist, which loading never notices). Time is the
   best of 3; memory is tracemalloc's count for one load. `create_folds((n/5,))` and one
   epoch's shuffled order at the larger size.
6. **Quality per CPU minute** (`--only quality`). `segtrain train` through its CLI with
   `--time-limit` and every other option at its default (the `small` U-Net at 128 px, batch
   1, RMSprop 3e-4, `--precision auto`, the budget learning-rate schedule, 2 loader workers,
   the preprocessed cache) against `benchmarks/newcomer.py`, the
   seed's training as a newcomer writes it in plain Keras (file lists, a one-thread
   generator decoding every pair every epoch, the seed's processing and augmentation,
   Carvana's `get_unet_256` in float32, batch 1, the seed's callbacks). Both train on the same
   24 membrane pairs (`--val 6`, seed 42) for the same wall-clock budget counted from the
   start of `fit`; segtrain also trains for half of it, and with the seed's recipe
   (`--model unet256 --lr 1e-4`, its defaults before this benchmark chose the ones above) for
   all of it. Runs go one after another,
   each in a fresh process. Each run's best weights (lowest val_loss) are scored by
   `segtrain.evaluation` on the 6 held-out pairs: threshold 0.5, each image at its full
   512x512 resolution, mean dice and IoU, next to the trivial all-foreground prediction
   (membrane masks are ~78% foreground).
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
8. **Multi-class quality** (`--only multiclass`). CamVid (`shared/data/camvid`: 184 training
   and 51 validation street frames, 480x360, 11 classes + void) for the same wall-clock budget
   of training: `brinelite build` with its classes.json, then `segtrain train --model small
   --size 128 --batch-size 4 --lr 1e-3 --time-limit` (softmax head, cross-entropy + soft dice
   with void masked out, the square root of median-frequency class weights, the rate decayed
   linearly to 0 over the budget, the seed's augmentation with nearest label warps, 16 frames
   kept aside for its checkpoint) against a hand-written Keras script
   as a newcomer writes it from the keras.io examples: OpenCV reads, resize, a softmax U-Net of
   the same widths (16..128, centre 256), Adam, sparse cross-entropy over all 12 values (void
   as a class), no augmentation, no weights, `fit` on in-memory arrays. Both are scored the
   same way by `segtrain.confusion` on the 51 validation frames at 480x360 (predictions
   resized back with nearest neighbour), void pixels left out; mIoU is the mean IoU over the
   classes present. The trivial predictor says the training split's majority class everywhere.
"""


TORCH_EXPLAIN = """\
9. **PyTorch** (`--only torch_loader`, in a child process). Samples/s of a later epoch of
   `to_torch` (the seed's two stages: prepare from the disk prepared cache, filled by the first
   epoch; augment every sample) in `DataLoader(batch_size=8, shuffle=True, num_workers=2,
   persistent_workers=True)` against a hand-written torch `Dataset` reading every pair with
   OpenCV and running both stages each epoch, same DataLoader; best epoch of each, alternating.
   Then a segmentation-models-pytorch U-Net (resnet18, random weights, Adam, BCE) trains the
   same steps from batches already in memory and from the `to_torch` DataLoader, alternating;
   the ratio is the median of the rounds' to_torch / in-memory img/s.
"""  # shown once a run has measured the section

NOTES = """
## What limits the figures

On a shared 2-core machine the absolute rates swing with outside load (other jobs ran tests
beside this run), the ratios much less: read the ratios of figures measured side by side.

{missed}
"""

MALLOC = """
- **TensorFlow's malloc setting (1, 2).** Keras feeds a PyDataset through a `tf.data`
  generator, and starting one makes TensorFlow pin glibc's mmap threshold at 128 KB (its
  mitigation for memory growth under Python 3.11): every array over 128 KB, the model's
  activations included, is then mmapped and unmapped at each use. brinelite's batches restore
  generous thresholds (`brinelite/malloc.py`, glibc only): on the demo's model an epoch took
  5.0 s instead of 9.4 s, for ~200 MB more resident memory, which stayed flat over 25 epochs.
"""

LOADER = """
- **Loader (2).** Decoding and the processing's OpenCV calls release the GIL and run on both
  cores; the rest of each sample (row lookup, numpy glue of the processing function) holds it.
  With one worker OpenCV's own pool (at its default) spreads each resize and warp over the
  cores; while `to_keras` makes a batch with two workers it holds that pool at 1
  (`brinelite/threads.py`: both levels of threads at once oversubscribed the cores). So the
  second worker only replaces OpenCV's threads: {workers:.2f}x here (a run with OpenCV held at
  1 thread for both, on an AVX2 machine, gave 1.67x).
- **Caches (2).** The image cache keeps decoded images, so it removes only the decoding share
  of an epoch: {plain:.1f}x without processing, {seed:.1f}x with the seed's. The prepared
  cache also keeps the resize and the mask fix, so later epochs run only the augmentation
  (an HSV round trip, one warp and a flip of 256 px float32 arrays, which must run every
  epoch): {later:.1f}x its first epoch and {brine:.1f}x the Brine-style loop, for
  {mib:.0f} MiB held in memory (1 MiB per 256 px float32 sample).
"""

MULTICLASS = """
- **Multi-class (8).** Per-class IoU on CamVid's validation frames:

{table}

  What moved it (one 4-minute run each by hand, same settings, AMD EPYC with avx512_bf16,
  2026-12-02, hand-written baseline 0.476 there): with the seed's ReduceLROnPlateau the rate
  was cut tenfold after 6 of 34 epochs (noisy early validation losses) and segtrain scored
  0.424; a linear decay to 0 over the time limit (`--lr-schedule budget`, what `auto` picks
  with `--time-limit`) scored 0.506; the square root of the median-frequency weights
  (`--class-weights sqrt`, the default) on top scored 0.557 (the full weights gave building
  and road away to the rare classes).
"""

COMPUTE_BF16 = """
- **Compute (4).** This CPU has bf16 units (avx512_bf16/amx_bf16), so `--precision auto`
  picks `mixed_bfloat16`; U-Net-256 trained {bf16:.2f}x as fast as in float32. It reaches
  {share_bf16:.0%} of the bf16 matmul peak where float32 reaches {share_fp32:.0%} of its own
  (each against the peak measured in its own process). Where a bf16 step's oneDNN time goes
  (the profile rows): {profile}. The rest of the step (BatchNormalization, ReLU, upsampling,
  concatenation, the casts between float32 and bf16) runs outside oneDNN and gains nothing
  from bf16 units. Tried to lift it (speed against plain `mixed_bfloat16` in another process):
  {tried}. {verdict}
"""

COMPUTE_FP32 = """
- **Compute (4).** This CPU has no AVX512-BF16/AMX: bfloat16 has no native units (its matmul
  runs at about the fp32 rate) and the U-Net under `mixed_bfloat16` trained at {bf16:.2f}x, so
  `--precision auto` picks float32 here (mixed_bfloat16 only where /proc/cpuinfo lists
  avx512_bf16 or amx_bf16). TensorFlow leaves oneDNN's graph rewrite off on such CPUs;
  turning it on (`TF_ENABLE_ONEDNN_OPTS=1`) trained U-Net-256 at {opts} the default's speed.
  Where a float32 step's oneDNN time goes, with the rewrite on: {profile}.
"""

QUALITY = """
- **Quality (6).** With the same budget ({budget}), segtrain's defaults scored dice
  {ours[dice]:.3f} ({ours[epochs]} epochs, {ours[precision]}) and the newcomer's script
  {them[dice]:.3f} ({them[epochs]} epochs, float32): {qu[dice_gain]:+.3f}; at half the budget
  segtrain scored {half[dice]:.3f} ({qu[half_budget_dice_gain]:+.3f} against the newcomer's
  full budget). The trivial all-foreground prediction scores {ours[all_foreground_dice]:.3f}
  on these images.{verdict}
"""

BF16_LIFTS = {
    "bf16_xla_jit": "XLA",
    "bf16_threads_2x1": "threads 2/1",
    "bf16_batch4": "batch 4 (per image)",
}


def _compute_note(co: dict[str, Any]) -> str:
    variants = co["variants"]
    if not {"keras_fp32", "mixed_bfloat16"} <= set(variants):
        return ""
    bf16 = variants["mixed_bfloat16"]
    if not (co["cpu"]["avx512_bf16"] or co["cpu"]["amx_bf16"]):
        opts = variants.get("fp32_onednn_opts", {}).get("speedup_vs_fp32")
        return COMPUTE_FP32.format(
            bf16=bf16["speedup_vs_fp32"],
            opts="(not measured)" if opts is None else f"{opts:.2f}x",
            profile=_profile_text(co, "float32"),
        )
    if "share_of_peak" not in bf16:
        return ""
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
    return COMPUTE_BF16.format(
        bf16=bf16["speedup_vs_fp32"],
        profile=_profile_text(co, "mixed_bfloat16"),
        share_bf16=bf16["share_of_peak"],
        share_fp32=variants["keras_fp32"].get("share_of_peak", 0),
        tried=tried,
        verdict=verdict,
    )


def _profile_text(co: dict[str, Any], policy: str) -> str:
    profile = co.get("profiles", {}).get(policy)
    return "not profiled" if profile is None else _profile_summary(profile, co["batch"], 3)


def _quality_verdict(runs: list[dict[str, Any]]) -> str:
    """Which runs of the race did no better than the trivial prediction; how the seed's did."""
    trivial = runs[0]["all_foreground_dice"]
    flat = [
        f"{run['who']} ({run['options']}) at {_duration(run['budget_s'])}"
        for run in runs
        if run["dice"] < trivial + 0.01
    ]
    text = ""
    for run in runs[3:]:
        text += (
            f" With the seed's recipe instead (`{run['options']}`, {run['precision']}), segtrain"
            f" scored {run['dice']:.3f} in the same budget ({run['epochs']} epochs,"
            f" {run['dice'] - runs[1]['dice']:+.3f} against the newcomer's copy of it)."
        )
    if flat:
        text += (
            f" Less than 0.01 dice above the trivial prediction (or below it), so no better: "
            f"{', '.join(flat)}."
        )
    return text


def _notes(results: dict[str, Any], rows: list[tuple]) -> str:
    missed = [f"**{row[1]}**: {row[2]}, target {row[3]}" for row in rows if row[4] == "**no**"]
    listed = "\n".join(f"- Missed: {m}." for m in missed) or "Every target measured here was met."
    text = NOTES.format(missed=listed)
    if "feeding" in results or "loader" in results:
        text += MALLOC
    lo = results.get("loader")
    if lo is not None and "prepared_later_vs_brine_style" in lo:
        text += LOADER.format(
            workers=lo["speedup_2_vs_1"],
            plain=lo["cache_no_processing_speedup"],
            seed=lo["cache_speedup"],
            later=lo["prepared_later_vs_first"],
            brine=lo["prepared_later_vs_brine_style"],
            mib=lo["prepared_cache_mib"],
        )
    if "compute" in results:
        text += _compute_note(results["compute"])
    qu = results.get("quality")
    if qu is not None and "runs" in qu:
        ours, theirs, half = qu["runs"][:3]
        text += QUALITY.format(
            budget=_duration(qu["budget_s"]),
            qu=qu,
            ours=ours,
            them=theirs,
            half=half,
            verdict=_quality_verdict(qu["runs"]),
        )
    mc = results.get("multiclass")
    if mc is not None:
        text += MULTICLASS.format(table=_per_class_table(mc))
    return text


def _earlier_sections(results: dict[str, Any], machine: dict[str, Any]) -> str:
    """A line naming the sections an earlier ``--only`` run measured (not on the machine above)."""
    earlier = [
        name
        for name, section in results.items()
        if name not in ("machine", "seconds")
        and isinstance(section, dict)
        and section.get("machine", {}).get("date") != machine.get("date")
    ]
    if not earlier:
        return ""
    return (
        f"\nSections measured in earlier runs (another date, and maybe another machine than "
        f"the one above): {', '.join(earlier)}. Compare their rows with each other only.\n"
    )


def render(results: dict[str, Any]) -> str:
    m = results.get("machine", {"cores": "?", "cpu": "?", "python": "?", "date": "?"})
    flags = m.get("cpu_flags")
    head = HEADER.format(
        cores=m["cores"],
        cpu=m["cpu"],
        flags="CPU flags " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in flags.items())
        if flags
        else "CPU flags not recorded",
        python=m["python"],
        date=m["date"],
        smoke=" — SMOKE MODE (toy sizes, figures not meaningful)" if m.get("smoke") else "",
        earlier=_earlier_sections(results, m),
    )
    rows = _rows(results)
    table = "".join("| " + " | ".join(str(c) for c in row) + " |\n" for row in rows)
    seconds = results.get("seconds", {})
    total = f"\nWall time per section (s): {', '.join(f'{k} {v:.0f}' for k, v in seconds.items())}"
    total += f"; total {sum(seconds.values()) / 60:.1f} min.\n"
    explain = EXPLAIN + (TORCH_EXPLAIN if "torch_loader" in results else "")
    return head + table + total + explain + _notes(results, rows)
