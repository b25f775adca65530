"""9. PyTorch: ``to_torch`` in a DataLoader, against a hand-written torch Dataset and in training.

(a) Loader: samples/s of a later epoch of ``to_torch`` (the seed's processing in two stages,
``benchmarks.loader.seed_stages``: the deterministic part from the disk prepared cache, filled
by the first epoch, the augmentation every sample) in ``DataLoader(batch_size=8, shuffle=True,
num_workers=2, persistent_workers=True)``, against a hand-written torch ``Dataset`` that reads
each pair with OpenCV and runs the same two stages every epoch, in the same DataLoader. The two
alternate; the best epoch of each is kept. (b) Feeding ratio: a segmentation-models-pytorch U-Net
(resnet18 encoder, random weights) trains the same number of steps from a list of batches
already in memory and from the ``to_torch`` DataLoader; the rounds alternate and the ratio is
the median of the rounds' (to_torch img/s) / (in-memory img/s).

Everything runs in a child process: torchvision (which smp imports) crashes when imported into
a process that already loaded TensorFlow, as earlier sections do.
"""

from __future__ import annotations

import itertools
import json
import shutil
import statistics
import subprocess
import sys
import time

import cv2
import numpy as np

from benchmarks import data
from benchmarks.loader import seed_stages
from benchmarks.section import Row, Section, met


class OpenCVPairs:
    """What a PyTorch user writes by hand: read both files with OpenCV, process, to tensors."""

    def __init__(self, paths: list[tuple[str, str]], prepare, augment) -> None:
        self.paths, self.prepare, self.augment = paths, prepare, augment

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        import torch

        image_path, mask_path = self.paths[index]
        image = cv2.cvtColor(cv2.imread(image_path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        mask = cv2.imread(mask_path, cv2.IMREAD_GRAYSCALE)
        x, y = self.augment(self.prepare((image.astype(np.float32), mask.astype(np.float32))))
        x = torch.from_numpy(np.ascontiguousarray(np.asarray(x, np.float32).transpose(2, 0, 1)))
        y = np.asarray(y, np.float32)
        return x, torch.from_numpy(np.ascontiguousarray(y.transpose(2, 0, 1)))


def _loader(samples, batch: int, workers: int = 2):
    from torch.utils.data import DataLoader

    return DataLoader(
        samples, batch, shuffle=True, num_workers=workers, persistent_workers=workers > 0
    )


def _epoch(samples, loader, epoch: int) -> float:
    """Seconds to pull every batch of one epoch."""
    if hasattr(samples, "set_epoch"):
        samples.set_epoch(epoch)
    start = time.perf_counter()
    for _batch in loader:
        pass
    return time.perf_counter() - start


def loader_rates(dataset, size: int, rounds: int, fresh: str) -> dict:
    prepare, augment, key = seed_stages(size)
    key += fresh
    ours = dataset.to_torch(
        "image", "mask", prepare=prepare, augment=augment, prepare_key=key, seed=0
    )
    paths = [(str(dataset.file_path(r.image)), str(dataset.file_path(r.mask))) for r in dataset]
    theirs = OpenCVPairs(paths, prepare, augment)
    feeds = {"to_torch": (ours, _loader(ours, 8)), "opencv": (theirs, _loader(theirs, 8))}
    first = _epoch(ours, feeds["to_torch"][1], 0)  # fills the disk cache
    best = {name: float("inf") for name in feeds}
    for epoch in range(1, rounds + 1):
        for name, (samples, loader) in feeds.items():
            best[name] = min(best[name], _epoch(samples, loader, epoch))
    rows = len(dataset)
    return {
        "rows": rows,
        "size": size,
        "to_torch_first_epoch_samples_s": rows / first,
        "to_torch_samples_s": rows / best["to_torch"],
        "opencv_dataset_samples_s": rows / best["opencv"],
        "to_torch_vs_opencv": best["opencv"] / best["to_torch"],
    }


def feeding_ratio(
    dataset, size: int, batch: int, steps: int, warmup: int, rounds: int, fresh: str
) -> dict:
    """smp's training loop fed from memory, by 2 DataLoader workers and in its own process.

    Blocks of ``steps`` timed steps run in the order memory, 2 workers, main process, memory,
    ... memory: every ``to_torch`` block is compared with the mean of the two memory blocks
    around it, so a drift of the machine's speed over the run cancels out; a ratio is the
    median of the rounds'.
    """
    import segmentation_models_pytorch as smp
    import torch

    from benchmarks.feeding import in_memory

    torch.manual_seed(0)
    model = smp.Unet("resnet18", encoder_weights=None, in_channels=3, classes=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    total = steps + warmup
    x, y = in_memory(dataset, size, total * batch)
    held = [
        (torch.from_numpy(x[k : k + batch].transpose(0, 3, 1, 2).copy()),
         torch.from_numpy(y[k : k + batch].transpose(0, 3, 1, 2).copy()))
        for k in range(0, len(x), batch)
    ]  # fmt: skip
    prepare, augment, key = seed_stages(size)
    samples = dataset.to_torch(
        "image", "mask", prepare=prepare, augment=augment, prepare_key=key + fresh, seed=0
    )
    feeds = {"workers2": _loader(samples, batch), "main_process": _loader(samples, batch, 0)}
    _epoch(samples, feeds["workers2"], 0)  # fills the prepared cache

    def train(batches) -> float:
        times = []
        for step, (xs, ys) in enumerate(batches):
            if step == total:
                break
            optimizer.zero_grad()
            loss_fn(model(xs), ys).backward()
            optimizer.step()
            times.append(time.perf_counter())
        timed = times[warmup:]
        return (len(timed) - 1) * batch / (timed[-1] - timed[0])

    def endless(feed, epoch: int):
        while True:
            samples.set_epoch(epoch)
            yield from feed
            epoch += 1

    memory = [train(held)]
    rates: dict[str, list[float]] = {name: [] for name in feeds}
    for round_ in range(rounds):
        for name, feed in feeds.items():
            rates[name].append(train(endless(feed, 1 + round_ * 100)))
        memory.append(train(held))
    around = [(a + b) / 2 for a, b in itertools.pairwise(memory)]
    out = {
        "model": "smp.Unet(resnet18)",
        "size": size,
        "batch": batch,
        "timed_steps": steps - 1,
        "rounds": rounds,
        "memory_img_s": statistics.median(memory),
    }
    for name, measured in rates.items():
        ratios = [b / a for a, b in zip(around, measured, strict=True)]
        out[name] = {
            "img_s": statistics.median(measured),
            "ratio": statistics.median(ratios),
            "round_ratios": ratios,
        }
    return out


def child(smoke: bool) -> dict:
    """Both measurements, in this (fresh) process.

    The prepared caches on disk start empty: their key holds this run's start time (an earlier
    run's cache, still on disk, would make the first epoch a later one), and they are removed
    at the end.
    """
    from brinelite.prepared import prepared_root

    dataset = data.dataset("membrane", repeat=1 if smoke else 8)
    earlier = set(prepared_root().glob("*"))
    fresh = f":run={time.time_ns()}"
    try:
        if smoke:
            loader = loader_rates(dataset, size=64, rounds=1, fresh=fresh)
            feeding = feeding_ratio(dataset, 64, batch=4, steps=3, warmup=1, rounds=1, fresh=fresh)
        else:
            loader = loader_rates(dataset, size=256, rounds=3, fresh=fresh)
            feeding = feeding_ratio(
                dataset, 256, batch=4, steps=20, warmup=3, rounds=7, fresh=fresh
            )
    finally:
        for made in set(prepared_root().glob("*")) - earlier:
            shutil.rmtree(made, ignore_errors=True)
    return {"loader": loader, "feeding": feeding}


def run(smoke: bool = False) -> dict:
    """The section's measurements, taken in a child process (torch loads there)."""
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.torch_loader", "smoke" if smoke else "full"],
        capture_output=True,
        text=True,
        cwd=data.REPO,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"torch_loader child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


FEEDS = {"workers2": "in 2 DataLoader workers", "main_process": "in the training process"}


def rows(tl: dict) -> list[Row]:
    """to_torch in a DataLoader: against a hand-written OpenCV Dataset, and feeding smp."""
    lo, fe = tl["loader"], tl["feeding"]
    return [
        Row(
            f"to_torch + DataLoader(2 workers), later epoch vs an OpenCV torch Dataset, "
            f"{lo['size']}px",
            f"{lo['to_torch_vs_opencv']:.2f}x ({lo['to_torch_samples_s']:.0f} vs "
            f"{lo['opencv_dataset_samples_s']:.0f} samples/s; first epoch "
            f"{lo['to_torch_first_epoch_samples_s']:.0f})",
            ">= 3x",
            met(lo["to_torch_vs_opencv"] >= 3),
        ),
        *[
            Row(
                f"Feeding ratio, {fe['model']} {fe['size']}px batch {fe['batch']}: to_torch "
                f"{how} vs tensors in memory",
                f"{fe[name]['ratio']:.3f} ({fe[name]['img_s']:.2f} vs "
                f"{fe['memory_img_s']:.2f} img/s)",
                ">= 0.99",
                met(fe[name]["ratio"] >= 0.99),
            )
            for name, how in FEEDS.items()
        ],
    ]


EXPLAIN = """\
9. **PyTorch** (`--only torch_loader`, in a child process). Samples/s of a later epoch of
   `to_torch` (the seed's two stages: prepare from the disk prepared cache, filled by the first
   epoch from empty; augment every sample) in `DataLoader(batch_size=8, shuffle=True, num_workers=2,
   persistent_workers=True)` against a hand-written torch `Dataset` reading every pair with
   OpenCV and running both stages each epoch, same DataLoader; best epoch of each, alternating.
   Then a segmentation-models-pytorch U-Net (resnet18, random weights, Adam, BCE) trains
   blocks of the same steps from batches already in memory, from the `to_torch` DataLoader
   with 2 workers and from one with `num_workers=0` (samples made in the training process), in
   the order memory, workers, process, memory, ...; each to_torch block is compared with the
   mean of the memory blocks before and after it, so a drift of the machine cancels out, and a
   ratio is the median of the rounds'. On 2 cores the training's threads use both: workers
   take their CPU from it and add torch's shared-memory hand-over, the training process makes
   its samples between steps.
"""

SECTION = Section("9", rows, EXPLAIN)


if __name__ == "__main__":
    print(json.dumps(child(sys.argv[1] == "smoke")))
