"""3. Install throughput: ``brinelite install`` against the machine's floor, same archive.

A ~200 MB archive of generated smooth 1024x1024 PNG pairs (blurred noise compresses like
photos) is served by ``python -m http.server`` on 127.0.0.1. The floor is ``curl -s -o`` +
``sha256sum`` + ``tar -xzf`` of the same archive (for a local file: ``sha256sum`` +
``tar -xzf``), timed together. Ours is the CLI, ``python -m brinelite install`` in a fresh
process (interpreter start and imports included), which verifies the archive hash and every
file against the manifest. Our progress bar draws only on a TTY, so the "progress on" runs
give it a pseudo-terminal with ``script -qc``. Peak RSS comes from ``/usr/bin/time``;
a small archive (membrane, ~6 MB) shows whether it grows with archive size.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import data
from benchmarks.section import Row, Section, met


def _timed(command: list[str] | str, env: dict | None = None, shell: bool = False):
    """(wall seconds, peak RSS MB) of one command, its output discarded.

    Peak RSS comes from ``/usr/bin/time``: its child is forked from a small process, so the
    figure is not inflated by this (TensorFlow-sized) process's pages, as ``wait4`` would be.
    """
    if shell:
        command = ["sh", "-c", command]
    with tempfile.NamedTemporaryFile("r") as rss:
        start = time.perf_counter()
        subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", rss.name, *command],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=True,
        )
        wall = time.perf_counter() - start
        return wall, int(rss.read().split()[-1]) / 1024


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _floor(url: str | None, archive: Path, work: Path) -> float:
    target = work / "floor"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    q = shlex.quote
    local = archive if url is None else work / "download.tar.gz"
    fetch = f"curl -s -o {q(str(local))} {q(url)} && " if url else ""
    script = f"{fetch}sha256sum {q(str(local))} && tar -xzf {q(str(local))} -C {q(str(target))}"
    wall, _ = _timed(script, shell=True)
    shutil.rmtree(target)
    return wall


def _ours(source: str, sha256: str, work: Path, tty: bool) -> tuple[float, float]:
    home = work / "home"
    shutil.rmtree(home, ignore_errors=True)
    env = dict(os.environ, BRINELITE_HOME=str(home), BRINELITE_CONFIG_DIR=str(home / "cfg"))
    command = [sys.executable, "-m", "brinelite", "install", source, "--sha256", sha256]
    if tty:
        command = ["script", "-qec", shlex.join(command), "/dev/null"]
    result = _timed(command, env=env)
    shutil.rmtree(home)
    return result


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def run(smoke: bool = False) -> dict:
    """Install a generated archive over HTTP and from a file against the floor; peak memory."""
    folder, generated = data.smooth_folder(8 if smoke else 200)
    start = time.perf_counter()
    big = data.archive(folder, "bench/smooth")
    built = time.perf_counter() - start
    small = data.archive(data.pairs_folder("membrane"), "bench/membrane")
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=big.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.0)
        url = f"http://127.0.0.1:{port}/{big.name}"
        sha = _sha256(big)
        repeats = 1 if smoke else 2
        with tempfile.TemporaryDirectory(dir=data.data_dir()) as tmp:
            work = Path(tmp)
            runs = {"http": [], "file": []}
            for _ in range(repeats):  # alternate floor and ours so drift hits both
                runs["http"].append((_floor(url, big, work), *_ours(url, sha, work, tty=True)))
                runs["file"].append((_floor(None, big, work), *_ours(str(big), sha, work, True)))
            quiet_http = _ours(url, sha, work, tty=False)
            small_mem = _ours(str(small), _sha256(small), work, tty=True)[1]
    finally:
        server.terminate()
        server.wait()
    out = {
        "archive_mb": big.stat().st_size / 1e6,
        "generate_s": generated,
        "build_s": built,
        "small_archive_mb": small.stat().st_size / 1e6,
    }
    for kind, values in runs.items():
        floor = min(v[0] for v in values)
        ours = min(v[1] for v in values)
        out[kind] = {
            "floor_s": floor,
            "ours_s": ours,
            "ratio": ours / floor,
            "ours_mb_s": out["archive_mb"] / ours,
            "peak_rss_mb": max(v[2] for v in values),
            "runs": values,
        }
    out["http_no_tty_s"] = quiet_http[0]
    out["python_import_brinelite_cli_s"] = _timed([sys.executable, "-c", "import brinelite.cli"])[0]
    out["small_archive_peak_rss_mb"] = small_mem
    return out


def rows(ins: dict) -> list[Row]:
    """Ours against the floor (http, file), and whether peak memory grows with the archive."""
    out = [
        Row(
            f"Install {ins['archive_mb']:.0f} MB from {kind}, progress on, vs floor",
            f"{k['ratio']:.2f}x ({k['ours_s']:.2f} s vs {k['floor_s']:.2f} s)",
            "<= 1.25x",
            met(k["ratio"] <= 1.25),
        )
        for kind, k in ((kind, ins[kind]) for kind in ("http", "file"))
    ]
    out.append(
        Row(
            "Install peak RSS, big vs small archive",
            f"{ins['http']['peak_rss_mb']:.0f} MB vs {ins['small_archive_peak_rss_mb']:.0f} MB "
            f"({ins['small_archive_mb']:.0f} MB archive)",
            "flat",
            met(ins["http"]["peak_rss_mb"] <= 1.2 * ins["small_archive_peak_rss_mb"] + 20),
        )
    )
    return out


EXPLAIN = """\
3. **Install throughput** (`--only install`). A ~200 MB archive of generated smooth 1024x1024
   PNG pairs served by `python -m http.server` on 127.0.0.1, or read from a local file.
   Floor: `curl -s -o` + `sha256sum` + `tar -xzf` (local: `sha256sum` + `tar -xzf`), timed
   together. Ours: `python -m brinelite install SOURCE --sha256 ...` in a fresh process
   (interpreter start and imports included; `python_import_brinelite_cli_s` in results.json
   shows that share), verification on. The progress bar draws only on a TTY, so these runs
   get a pseudo-terminal from `script -qc`; `http_no_tty_s` is the same install without one.
   Peak RSS from `/usr/bin/time -f %M` (whole process tree); a ~6 MB archive shows
   whether it grows with archive size.
"""

SECTION = Section("3", rows, EXPLAIN)
