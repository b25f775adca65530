"""1. Feeding ratio: does the data pipeline hide behind the model's compute?

The same compiled model, at the precision ``--precision auto`` picks on this CPU (bf16 where it
has bf16 units), trains the same number of steps (a) from numpy arrays already processed and
held in memory, and (b) from ``to_keras`` with the seed's processing in two stages on
``membrane`` 512x512 PNGs: the deterministic part (decode, channels, mask, resize) from the
preprocessed cache, filled by one epoch before timing, and the augmentation (HSV shift,
shift/scale/rotate, flip) on every sample. A callback timestamps every batch; rates count only
batches after a warm-up, so the graph tracing and the 4-10 s stall ``fit`` on shuffled numpy
arrays shows at epoch start are left out of both. The two sources alternate (a, b, a, b, ...);
the ratio is the median of the rounds' b / a, so a drift of the machine's load across rounds
cancels out.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from benchmarks import data
from benchmarks.loader import MALLOC, seed_stages
from benchmarks.section import Row, Section, met


def _clock():
    import keras

    class BatchClock(keras.callbacks.Callback):
        """Timestamps the end of every training batch."""

        def __init__(self) -> None:
            super().__init__()
            self.times: list[float] = []

        def on_train_batch_end(self, batch, logs=None) -> None:
            self.times.append(time.perf_counter())

    return BatchClock()


def _rate(times: list[float], warmup: int, batch_size: int) -> float:
    timed = times[warmup:]
    return (len(timed) - 1) * batch_size / (timed[-1] - timed[0])


def in_memory(dataset, size: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` samples processed once (no augmentation), stacked as float32 arrays."""
    from segtrain.processing import make_processor

    process = make_processor(size=size, augment=False)
    samples = []
    for k in range(count):
        row = dataset[k % len(dataset)]
        samples.append(process((dataset.load_image(row.image), dataset.load_image(row.mask))))
    xs = np.stack([s[0] for s in samples]).astype(np.float32)
    return xs, np.stack([s[1] for s in samples]).astype(np.float32)


def measure(model_name: str, size: int, batch: int, steps: int, warmup: int, rounds: int):
    """images/s from numpy and from ``to_keras`` (alternating ``rounds`` times) for one model."""
    from segtrain.models import build_model
    from segtrain.runtime import resolve_precision

    dataset = data.dataset("membrane", repeat=4)
    total = steps + warmup
    x, y = in_memory(dataset, size, total * batch)
    precision = resolve_precision("auto")
    model = build_model(model_name, size, precision=precision)
    model.fit(x[: 2 * batch], y[: 2 * batch], batch_size=batch, epochs=1, verbose=0)  # trace
    prepare, augment, key = seed_stages(size)
    feed = dataset.to_keras(
        "image", "mask", batch_size=batch, seed=0, prepare=prepare, augment=augment,
        prepare_key=key, cache="memory",
    )  # fmt: skip
    for index in range(len(feed)):  # one epoch fills the cache
        feed[index]
    feed.on_epoch_end()
    rates: dict[str, list[float]] = {"numpy": [], "to_keras": []}
    for _ in range(rounds):
        clock = _clock()
        model.fit(x, y, batch_size=batch, epochs=1, shuffle=True, verbose=0, callbacks=[clock])
        rates["numpy"].append(_rate(clock.times, warmup, batch))
        clock = _clock()
        model.fit(feed, epochs=1, steps_per_epoch=total, verbose=0, callbacks=[clock])
        rates["to_keras"].append(_rate(clock.times, warmup, batch))
    a = statistics.median(rates["numpy"])
    b = statistics.median(rates["to_keras"])
    pairs = [k / n for n, k in zip(rates["numpy"], rates["to_keras"], strict=True)]
    return {
        "model": model_name,
        "precision": precision,
        "size": size,
        "batch": batch,
        "timed_steps": steps - 1,
        "rounds": rounds,
        "numpy_img_s": a,
        "to_keras_img_s": b,
        "ratio": statistics.median(pairs),
        "pair_ratios": pairs,
        "numpy_runs": rates["numpy"],
        "to_keras_runs": rates["to_keras"],
    }


def run(smoke: bool = False) -> dict:
    """Both models; smoke mode uses a tiny model and a handful of steps."""
    if smoke:
        cases = [("tiny", 64, 4, 4, 2, 1)]
    else:
        cases = [("unet256", 256, 4, 6, 1, 3), ("small", 256, 4, 10, 2, 3)]
    return {"cases": [measure(*case) for case in cases]}


def rows(result: dict) -> list[Row]:
    """One ratio per case: to_keras's img/s over in-memory arrays' (the targets differ)."""
    out = []
    for c in result["cases"]:
        target = 0.99 if c["model"] == "unet256" else 0.97
        out.append(
            Row(
                f"Feeding ratio b/a, {c['model']} {c['size']}px batch {c['batch']}, "
                f"{c.get('precision', 'float32')}",
                f"{c['ratio']:.3f} ({c['to_keras_img_s']:.2f} vs {c['numpy_img_s']:.2f} img/s)",
                f">= {target}",
                met(c["ratio"] >= target),
            )
        )
    return out


EXPLAIN = """\
1. **Feeding ratio** (`--only feeding`). The same compiled model, at the precision
   `--precision auto` picks on this CPU (the row names it), trains the same number of steps
   from (a) numpy arrays already processed in memory and (b) `to_keras` with the seed's
   processing in two stages: the deterministic part (decode, channels, mask, resize) from the
   preprocessed cache, filled by one epoch before timing, and the augmentation on every sample
   (2 workers). A callback timestamps every batch and only batches after a warm-up count, so
   tracing and the epoch-start stall of `fit` on shuffled numpy arrays are excluded. Sources
   alternate (a, b, a, b, a, b: 5 timed steps each for U-Net-256, 9 for the small model);
   ratio = the median over the 3 rounds of b / a (the rates shown are the medians of each).
"""

SECTION = Section("1", rows, EXPLAIN, lambda result: [MALLOC])
