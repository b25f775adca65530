"""Benchmark data: the real shared datasets (repeated when a larger set is needed) and
generated smooth images for size.

Everything is cached under ``benchmarks/.data`` (override with ``$BENCH_DATA``), so only the
first run pays for copying, installing and generating. Datasets are installed with brinelite
itself into a private cache (``$BRINELITE_HOME`` is pointed at ``.data/home``).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def data_dir() -> Path:
    """The cache folder for benchmark data (created on demand)."""
    path = Path(os.environ.get("BENCH_DATA", REPO / "benchmarks" / ".data"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def use_private_home() -> Path:
    """Point brinelite's cache at the benchmark data folder; return it."""
    home = data_dir() / "home"
    os.environ["BRINELITE_HOME"] = str(home)
    os.environ["BRINELITE_CONFIG_DIR"] = str(home / "config")
    os.environ.pop("BRINELITE_REGISTRY", None)
    return home


def jax_cache() -> dict[str, str]:
    """The environment that shares JAX's compiled programs between benchmark processes.

    The cache lives in the data folder, or where ``JAX_COMPILATION_CACHE_DIR`` says (the
    test suite shares one between its runs); JAX's defaults would keep only compilations over
    a second, so a model's many small ones (its initialisers) would be compiled in every child.
    A size limit turns on the cache's file lock (children write entries at the same time).
    Timed steps come after the warm-up ones, so the cache only shortens start-up.
    """
    folder = os.environ.get("JAX_COMPILATION_CACHE_DIR") or str(data_dir() / "jax-cache")
    return {
        "JAX_COMPILATION_CACHE_DIR": folder,
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
        "JAX_COMPILATION_CACHE_MAX_SIZE": str(2**30),
    }


def _label(name: str, repeat: int, first: int | None) -> str:
    return f"{name}-x{repeat}" + ("" if first is None else f"-first{first}")


def pairs_folder(name: str, repeat: int = 1, first: int | None = None) -> Path:
    """An images/ + masks/ folder of shared dataset ``name`` (its ``first`` pairs in file-name
    order, or all), every pair copied ``repeat`` times."""
    dest = data_dir() / "src" / _label(name, repeat, first)
    if (dest / ".done").exists():
        return dest
    shutil.rmtree(dest, ignore_errors=True)
    source = SHARED / name
    for sub in ("images", "masks"):
        (dest / sub).mkdir(parents=True)
    for image in sorted((source / "images").iterdir())[:first]:
        mask = next((source / "masks").glob(image.stem + ".*"))
        for k in range(repeat):
            stem = f"{k:03d}_{image.stem}"
            os.link(image, dest / "images" / (stem + image.suffix))
            os.link(mask, dest / "masks" / (stem + mask.suffix))
    (dest / ".done").touch()
    return dest


def dataset(name: str, repeat: int = 1, first: int | None = None):
    """The installed brinelite Dataset of shared dataset ``name`` (its ``first`` pairs, or all)
    repeated ``repeat`` times."""
    from brinelite import install, load_dataset

    use_private_home()
    full = f"bench/{_label(name, repeat, first).replace('_', '-')}@1.0.0"
    try:
        return load_dataset(full)
    except Exception:
        install(str(pairs_folder(name, repeat, first)), name=full, quiet=True)
        return load_dataset(full)


def with_val_split(name: str, val: int, seed: int, first: int | None = None):
    """Shared dataset ``name`` (its ``first`` pairs, or all) declaring a ``val`` split: the
    ``val`` rows ``create_folds((val,), shuffle=True, seed=seed)`` draws from it.

    A declared split keeps the validation rows fixed while a run's ``--seed`` changes what
    else it seeds (``segtrain train --val-split val --seed K``: the weights, the batch order,
    the augmentations), so several seeds can be raced on one fold.
    """
    from brinelite import install, load_dataset

    label = f"{_label(name, 1, first)}-val{val}-seed{seed}"
    full = f"bench/{label.replace('_', '-')}@1.0.0"
    try:
        return load_dataset(full)
    except Exception:
        pass
    dest = data_dir() / "src" / label
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(pairs_folder(name, 1, first), dest, copy_function=os.link)
    validation, _ = dataset(name, first=first).create_folds((val,), shuffle=True, seed=seed)
    stems = sorted(Path(row.image).stem for row in validation)
    (dest / "split-val.txt").write_text("".join(stem + "\n" for stem in stems))
    install(str(dest), name=full, quiet=True)
    return load_dataset(full)


def split_folds(data, name: str):
    """``(validation, training)``: the split ``name`` that ``data`` declares, and every other
    row, as ``segtrain train --val-split NAME`` takes them."""
    validation = data.split(name)
    return validation, data.subset(np.setdiff1d(np.arange(len(data)), validation.indices))


def smooth_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """A photo-like RGB uint8 image: low-frequency noise upsampled, plus faint grain."""
    low = rng.uniform(0, 255, (size // 32, size // 32, 3)).astype(np.float32)
    image = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC)
    image = cv2.GaussianBlur(image, (0, 0), 3) + rng.normal(0, 2, (size, size, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def smooth_folder(total_mb: int, size: int = 1024, seed: int = 0) -> tuple[Path, float]:
    """A folder of generated smooth PNG pairs adding up to about ``total_mb`` MB.

    Returns the folder and the seconds spent generating (0 when cached).
    """
    dest = data_dir() / "src" / f"smooth-{total_mb}mb-{size}"
    if (dest / ".done").exists():
        return dest, 0.0
    start = time.perf_counter()
    shutil.rmtree(dest, ignore_errors=True)
    (dest / "images").mkdir(parents=True)
    (dest / "masks").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    written, k = 0, 0
    while written < total_mb * 1e6:
        image = smooth_image(rng, size)
        mask = np.where(image[..., 0] > 127, 255, 0).astype(np.uint8)
        for path, array in ((f"images/{k:04d}.png", image), (f"masks/{k:04d}.png", mask)):
            cv2.imwrite(str(dest / path), array, [cv2.IMWRITE_PNG_COMPRESSION, 1])
            written += (dest / path).stat().st_size
        k += 1
    (dest / ".done").touch()
    return dest, time.perf_counter() - start


def archive(folder: Path, name: str) -> Path:
    """A brinelite archive (``.tar.gz``) built from ``folder``, cached next to it."""
    import brinelite

    out = data_dir() / "archives" / f"{folder.name}.tar.gz"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".part")
        brinelite.build(folder, name, "1.0.0", out=tmp)
        tmp.rename(out)
    return out


CAMVID_CLASSES = ["sky", "building", "pole", "road", "pavement", "tree", "sign", "fence", "car",
                  "pedestrian", "bicyclist"]  # fmt: skip


def camvid_stems(split: str, frames: int | None = None) -> list[str]:
    """The frames of CamVid's ``split`` (train, val, test), or its first ``frames``."""
    return (SHARED / "camvid" / f"split-{split}.txt").read_text().split()[:frames]


def camvid_source(split: str, frames: int) -> Path:
    """An images/ + masks/ + classes.json folder of a CamVid split's first ``frames`` frames.

    The files are hard-linked, not copied.
    """
    import json

    dest = data_dir() / "src" / f"camvid-{split}-{frames}"
    if (dest / ".done").exists():
        return dest
    shutil.rmtree(dest, ignore_errors=True)
    source = SHARED / "camvid"
    for sub in ("images", "masks"):
        (dest / sub).mkdir(parents=True)
    for stem in camvid_stems(split, frames):
        for sub in ("images", "masks"):
            os.link(source / sub / f"{stem}.png", dest / sub / f"{stem}.png")
    classes = [{"id": k, "name": name} for k, name in enumerate(CAMVID_CLASSES)]
    (dest / "classes.json").write_text(json.dumps({"classes": classes, "ignore": 11}, indent=1))
    (dest / ".done").touch()
    return dest
