"""5. Scaling: ``load_dataset`` time and memory for generated manifests of 10k and 100k rows.

manifest.json + rows.csv are written directly into a dataset folder; the image files they
name do not exist (loading never opens them), but the manifest lists every one of them
with a size and sha256 as an installed manifest does, so these are pure metadata figures. Memory is
the traced Python allocation (tracemalloc) of the loaded Dataset. ``create_folds`` and one
epoch of index shuffling (``to_keras`` order) are timed at 100k rows.
"""

from __future__ import annotations

import time
import tracemalloc

from benchmarks import data
from benchmarks.section import Row, Section, met


def _write(rows: int):
    from brinelite import manifest as manifest_io
    from brinelite.hashes import FileInfo
    from brinelite.manifest import Column

    folder = data.data_dir() / "scaling" / f"rows-{rows}"
    if not (folder / "manifest.json").exists():
        folder.mkdir(parents=True, exist_ok=True)
        columns = [Column("image", "image"), Column("mask", "image")]
        table = [(f"images/{k:06d}.png", f"masks/{k:06d}.png") for k in range(rows)]
        manifest_io.write_rows(folder, columns, table)
        fake = FileInfo(100_000, "0" * 64)
        files = {path: fake for row in table for path in row}
        manifest = manifest_io.Manifest(
            name="bench/scaling", version="1.0.0", columns=columns, rows=rows, files=files
        )
        manifest_io.write(folder, manifest)
    return folder


def _load(folder):
    from brinelite import load_dataset

    times = []
    for _ in range(3):
        start = time.perf_counter()
        ds = load_dataset(str(folder))
        times.append(time.perf_counter() - start)
    tracemalloc.start()
    ds = load_dataset(str(folder))
    size, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return ds, min(times), size


def run(smoke: bool = False) -> dict:
    """Load time and memory of generated manifests, folds and an epoch's shuffle."""
    from brinelite.shards import EpochOrder

    out = {}
    for rows in (1_000, 10_000) if smoke else (10_000, 100_000):
        ds, seconds, size = _load(_write(rows))
        out[f"rows_{rows}"] = {
            "load_s": seconds,
            "memory_mb": size / 1e6,
            "bytes_per_row": size / rows,
        }
    start = time.perf_counter()
    ds.create_folds((len(ds) // 5,), seed=0)
    out["create_folds_s"] = time.perf_counter() - start
    order = EpochOrder(len(ds), True, 0, None, "pad")
    start = time.perf_counter()
    order.epoch(1)
    out["shuffle_epoch_s"] = time.perf_counter() - start
    out["rows"] = len(ds)
    return out


def rows(sc: dict) -> list[Row]:
    """Load time and memory per row at the largest size measured, folds and shuffling."""
    sizes = sorted(int(key[5:]) for key in sc if key.startswith("rows_"))
    small, big = sc[f"rows_{sizes[0]}"], sc[f"rows_{sizes[-1]}"]
    return [
        Row(
            f"load_dataset, {sizes[-1]:,} rows",
            f"{big['load_s']:.2f} s ({small['load_s']:.3f} s at {sizes[0]:,})",
            "< 1 s",
            met(big["load_s"] < 1),
        ),
        Row(
            "Memory per row (10x rows)",
            f"{big['bytes_per_row']:.0f} B/row ({small['bytes_per_row']:.0f} B/row)",
            "proportional to rows",
            met(big["bytes_per_row"] < 2 * small["bytes_per_row"]),
        ),
        Row(
            f"create_folds / shuffle one epoch, {sc['rows']:,} rows",
            f"{sc['create_folds_s'] * 1e3:.1f} ms / {sc['shuffle_epoch_s'] * 1e3:.1f} ms",
        ),
    ]


EXPLAIN = """\
5. **Scaling** (`--only scaling`). `load_dataset` of generated manifest.json + rows.csv
   (10k, 100k rows, the manifest listing every file with size and sha256 as an installed one
   does; the image files themselves do not exist, which loading never notices). Time is the
   best of 3; memory is tracemalloc's count for one load. `create_folds((n/5,))` and one
   epoch's shuffled order at the larger size.
"""

SECTION = Section("5", rows, EXPLAIN)
