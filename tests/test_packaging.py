"""Issue 13.1: the dataset core installs and works without TensorFlow or Keras.

A fresh venv gets ``pip install <repo>`` with no extras (the wheels come from pip's local
cache and indexes: about 15 s), and the dataset CLI and Python API run there: install the
bundled demo, load it and make folds, build a generated images/ + masks/ folder, publish it
to a folder registry and install it back from there, search it, show a contact sheet. What
needs an extra (segtrain, s3:// registries) stops with one line naming the pip install.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
import venv
from pathlib import Path

import pytest
from conftest import REPO, make_pairs

from brinelite.commandline import EXTRAS

# The files a wheel is built from; copied so the build leaves nothing in the repository.
SOURCES = ("pyproject.toml", "README.md", "brinelite", "segtrain")


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory) -> Path:
    """A venv holding brinelite installed from this repository, core dependencies only."""
    root = tmp_path_factory.mktemp("core")
    source = root / "source"
    source.mkdir()
    for name in SOURCES:
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy
        copy(REPO / name, source / name)
    for cache in source.rglob("__pycache__"):
        shutil.rmtree(cache)
    env_dir = root / "venv"
    venv.create(env_dir, with_pip=True)
    installed = subprocess.run(
        [env_dir / "bin" / "python", "-m", "pip", "install", "--quiet", str(source)],
        capture_output=True,
        text=True,
        env=_clean_env(env_dir),
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    return env_dir


def _clean_env(env_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a user of ``env_dir``: its bin/ first, no test-suite PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env['PATH']}"
    return {**env, **extra}


def _run(core_venv: Path, args: list[str], cwd: Path, **extra: str) -> str:
    done = subprocess.run(
        args, capture_output=True, text=True, cwd=cwd, env=_clean_env(core_venv, **extra)
    )
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    return done.stdout


def test_core_install_has_no_tensorflow_and_the_dataset_cli_works(core_venv, tmp_path):
    python = str(core_venv / "bin" / "python")
    brinelite = str(core_venv / "bin" / "brinelite")
    for framework in ("tensorflow", "keras", "matplotlib"):
        absent = subprocess.run([python, "-c", f"import {framework}"], capture_output=True)
        assert absent.returncode != 0, f"{framework} is installed in the core venv"

    home = {"BRINELITE_HOME": str(tmp_path / "home"), "BRINELITE_CONFIG_DIR": str(tmp_path)}
    run = lambda *args, **extra: _run(core_venv, list(args), tmp_path, **home, **extra)  # noqa: E731

    assert "demo/membrane@1.0.0 was installed" in run(brinelite, "install", "demo/membrane")
    folds = run(
        python,
        "-c",
        "import sys, brinelite\n"
        "assert brinelite.__file__.startswith(sys.prefix), brinelite.__file__\n"
        "ds = brinelite.load_dataset('demo/membrane')\n"
        "val, train = ds.create_folds((6,))\n"
        "image = ds.load_image(ds[0].image)\n"
        "print(len(ds), len(val), len(train), image.shape)\n"
        "assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules\n",
    )
    assert folds.split()[:3] == ["30", "6", "24"]

    pairs = make_pairs(tmp_path / "pairs", count=6)
    registry = tmp_path / "registry"
    built = run(
        brinelite,
        "build",
        str(pairs),
        "--name",
        "gen/discs",
        "--out",
        "discs.tar.gz",
        "--publish",
        str(registry),
        "-q",
    )
    assert "Built gen/discs@1.0.0: 6 rows" in built and "Published gen/discs@1.0.0" in built

    shared = {"BRINELITE_REGISTRY": str(registry)}
    assert "gen/discs" in run(brinelite, "search", "discs", **shared)
    assert "gen/discs@1.0.0 was installed" in run(brinelite, "install", "gen/discs", **shared)
    listed = [line.split()[0] for line in run(brinelite, "list").splitlines()]
    assert listed == ["demo/membrane@1.0.0", "gen/discs@1.0.0"]
    assert "files OK" in run(brinelite, "verify", "gen/discs")
    run(brinelite, "show", "gen/discs", "--out", "sheet.png", "--rows", "4")
    assert (tmp_path / "sheet.png").stat().st_size > 1000

    # What needs an extra is one line naming the pip install: segtrain, an s3:// registry.
    segtrain = str(core_venv / "bin" / "segtrain")
    s3 = {"BRINELITE_REGISTRY": "s3://team-data/registry"}
    for args, extra in (
        ([segtrain, "train", "demo/membrane"], "train"),
        ([brinelite, "search"], "s3"),
    ):
        failed = subprocess.run(
            args,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=_clean_env(core_venv, **home, **s3),
        )
        assert failed.returncode == 1, (args, failed.stderr)
        assert failed.stderr.startswith("Error: ") and failed.stderr.count("\n") == 1, failed.stderr
        assert f"pip install 'brinelite[{extra}]'" in failed.stderr


def test_every_optional_package_has_its_extra_named():
    # run_app's one-line message for a missing module must name an extra that really adds it.
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for extra in ("keras", "train", "s3"):
        for requirement in extras[extra]:
            package = re.match(r"[A-Za-z0-9_.-]+", requirement).group().lower()
            assert EXTRAS.get(package) in extras and package in str(extras[EXTRAS[package]])
    assert set(EXTRAS.values()) == {"keras", "train", "s3"}
