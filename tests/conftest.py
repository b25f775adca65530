"""Fixtures shared by the test suite: an isolated cache, real datasets, a CLI runner."""

from __future__ import annotations

import json
import os
import shutil
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

# The suite runs TensorFlow and torch in the same processes. CUDA builds of torch load triton
# with torch._dynamo (torchvision and segmentation-models-pytorch import it), and triton
# crashes the process when TensorFlow was loaded before it; the other order works. So
# torch's half comes first, before any test module imports TensorFlow.
import torch._dynamo  # noqa: E402, F401, I001

import benchmarks.data

REPO = Path(__file__).resolve().parents[1]
# Seconds a test waits on a child process, thread or socket before calling it hung. Nothing the
# tests wait for takes more than about 2 minutes on an idle 2-core machine, so a slow or busy
# one does not reach it: only a hang does.
HANG_GUARD = 900
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def jax_cache(tmp_path_factory) -> Iterator[dict[str, str]]:
    """The environment of the run's JAX compilation cache, set for every child process.

    JAX compiles each of a model's small programs (every initialiser) in every process and
    keeps only compilations over a second; the suite's JAX processes (its xdist workers'
    included) share one cache for the run with the benchmarks' settings, which keep them all.
    """
    base = tmp_path_factory.getbasetemp()
    run = base.parent if "PYTEST_XDIST_WORKER" in os.environ else base  # the workers' common root
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JAX_COMPILATION_CACHE_DIR", str(run / "jax-cache"))
        settings = benchmarks.data.jax_cache()
        for name, value in settings.items():
            patch.setenv(name, value)
        yield settings


@pytest.fixture(autouse=True)
def brinelite_home(tmp_path_factory, monkeypatch) -> Path:
    """Every test gets its own empty cache and no configured registry."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("BRINELITE_HOME", str(home))
    monkeypatch.delenv("BRINELITE_REGISTRY", raising=False)
    monkeypatch.delenv("BRINELITE_TOKEN", raising=False)
    monkeypatch.setenv("BRINELITE_CONFIG_DIR", str(home / "config"))
    return home


@pytest.fixture(autouse=True)
def hermetic_environment(monkeypatch, tmp_path):
    """No proxies or .netrc from the machine running the tests."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))


class Recorder:
    """A Progress that remembers what it was told."""

    def __init__(self) -> None:
        self.total: int | None = None
        self.done = 0

    def start(self, total: int | None) -> None:
        self.total = total
        self.done = 0

    def advance(self, amount: int) -> None:
        self.done += amount


def write_zip(path: Path, members: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    """A zip archive at ``path`` holding ``members`` exactly as given (hostile ones included)."""
    with zipfile.ZipFile(path, "w") as zf:
        for info, data in members:
            zf.writestr(info, data)
    return path


def zip_entry(name: str, mode: int) -> zipfile.ZipInfo:
    """A zip entry carrying Unix mode bits (file type included: links, FIFOs, devices)."""
    info = zipfile.ZipInfo(name)
    info.external_attr = mode << 16
    return info


def copy_pairs(name: str, dest: Path, count: int | None = None) -> Path:
    """Copy the first ``count`` image/mask pairs of a shared dataset into ``dest``."""
    source = SHARED_DATA / name
    if not source.is_dir():
        pytest.fail(f"shared dataset {source} is missing: the suite needs ../shared/data")
    for sub in ("images", "masks"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    images = sorted((source / "images").iterdir())[:count]
    for image in images:
        mask = next((source / "masks").glob(image.stem + ".*"))
        shutil.copy(image, dest / "images" / image.name)
        shutil.copy(mask, dest / "masks" / mask.name)
    return dest


@pytest.fixture
def membrane_src(tmp_path) -> Path:
    """The 30 real ISBI-2012 membrane pairs (512x512 grey PNG), copied."""
    return copy_pairs("membrane", tmp_path / "membrane")


@pytest.fixture
def kvasir_src(tmp_path) -> Path:
    """12 real Kvasir-SEG pairs (RGB JPEG images of various sizes, PNG masks), copied."""
    return copy_pairs("kvasir_seg", tmp_path / "kvasir", count=12)


def camvid_subset(dest: Path, train: int = 4, val: int = 2, classes: bool = True) -> Path:
    """The first ``train`` and ``val`` frames of CamVid's two splits, copied into ``dest`` with
    split-train.txt / split-val.txt naming them (and, with ``classes``, a classes.json)."""
    source = SHARED_DATA / "camvid"
    for sub in ("images", "masks"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    for name, count in (("train", train), ("val", val)):
        stems = (source / f"split-{name}.txt").read_text().split()[:count]
        for stem in stems:
            for sub in ("images", "masks"):
                shutil.copy(source / sub / f"{stem}.png", dest / sub / f"{stem}.png")
        (dest / f"split-{name}.txt").write_text("\n".join(stems) + "\n")
    if classes:
        declared = [{"id": k, "name": f"class {k}"} for k in range(11)]
        (dest / "classes.json").write_text(json.dumps({"classes": declared, "ignore": 11}))
    return dest


def make_pairs(dest: Path, count: int = 8, size: tuple[int, int] = (48, 64), seed: int = 0) -> Path:
    """Generated RGB images of a bright disc on a textured background, mask = the disc."""
    rng = np.random.default_rng(seed)
    (dest / "images").mkdir(parents=True, exist_ok=True)
    (dest / "masks").mkdir(parents=True, exist_ok=True)
    height, width = size
    for i in range(count):
        background = rng.integers(0, 90, (height, width, 3), dtype=np.uint8)
        mask = np.zeros((height, width), np.uint8)
        centre = (
            int(rng.integers(width // 4, 3 * width // 4)),
            int(rng.integers(height // 4, 3 * height // 4)),
        )
        cv2.circle(mask, centre, int(rng.integers(min(size) // 6, min(size) // 3)), 255, -1)
        image = background.copy()
        image[mask > 0] = (200, 180, 60)
        cv2.imwrite(str(dest / "images" / f"{i:03d}.png"), image)
        cv2.imwrite(str(dest / "masks" / f"{i:03d}.png"), mask)
    return dest


@pytest.fixture
def pairs_src(tmp_path) -> Path:
    """Eight generated 48x64 image/mask pairs."""
    return make_pairs(tmp_path / "pairs")


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def cli_runner(main, program: str, capsys, monkeypatch):
    """A function running ``program ARGS`` in-process exactly as its console script does."""

    def run(*args: str) -> CliResult:
        monkeypatch.setattr(sys, "argv", [program, *map(str, args)])
        capsys.readouterr()
        with pytest.raises(SystemExit) as exited:
            main()
        captured = capsys.readouterr()
        return CliResult(exited.value.code or 0, captured.out, captured.err)

    return run


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run ``brinelite ARGS`` in-process exactly as the console script does."""
    from brinelite.cli import main

    return cli_runner(main, "brinelite", capsys, monkeypatch)


@pytest.fixture
def segtrain_cli(capsys, monkeypatch):
    """Run ``segtrain ARGS`` in-process exactly as the console script does."""
    from segtrain.cli import main

    return cli_runner(main, "segtrain", capsys, monkeypatch)


def one_line_error(result: CliResult, *words: str) -> None:
    """A failed command printed exactly one line, 'Error: ...', holding every word."""
    assert result.code != 0
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.err
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1, one per test module."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_endpoint, monkeypatch) -> str:
    """A fresh bucket; credentials and endpoint through the environment, as a user sets them."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "BRINELITE_S3_ENDPOINT_URL": s3_endpoint,
        "NO_PROXY": "127.0.0.1",
    }.items():
        monkeypatch.setenv(name, value)
    import boto3

    client = boto3.client("s3", endpoint_url=s3_endpoint)
    for found in client.list_buckets().get("Buckets", []):
        objects = client.list_objects_v2(Bucket=found["Name"]).get("Contents", [])
        for item in objects:
            client.delete_object(Bucket=found["Name"], Key=item["Key"])
        client.delete_bucket(Bucket=found["Name"])
    client.create_bucket(Bucket="team-datasets")
    return "team-datasets"
