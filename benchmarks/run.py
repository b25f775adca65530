"""Run the benchmarks side by side and write ``results.json`` and ``docs/benchmarks.md``.

``python -m benchmarks.run [--smoke] [--only feeding,loader,...] [--out DIR] [--render]``

``--smoke`` runs every section at toy sizes (2 minutes on 2 cores, for the test suite);
``--only`` runs some sections and keeps the others' previous results; ``--render`` only
rewrites the markdown from an existing results.json. ``BENCH_PEERS_MINUTES=M`` sets the
budget of each entry of the kvasir race (``--only peers``, 5 minutes by default).

A section is a module of this package with ``run(smoke) -> dict`` (its entry of results.json)
and a ``SECTION`` (``benchmarks.section``: its rows and targets, explanation and notes);
adding one to ``SECTIONS`` below is all its registration.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from benchmarks import compute, data, report
from benchmarks.section import Section

# The registry: every section module (with its ``SECTION``), in the order of the run and the page.
SECTIONS = [
    "feeding",
    "loader",
    "install",
    "compute",
    "scaling",
    "quality",
    "distributed",
    "multiclass",
    "torch_loader",
    "peers",
]
REPO = Path(__file__).resolve().parents[1]


def _module(name: str):
    import importlib

    return importlib.import_module(f"benchmarks.{name}")


def sections() -> dict[str, Section]:
    """Every registered section's part of the page, by name, in order."""
    return {name: _module(name).SECTION for name in SECTIONS}


def main(argv: list[str] | None = None) -> None:
    """Run the sections asked for, then write results.json and docs/benchmarks.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="toy sizes, about 2 minutes")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    parser.add_argument("--out", type=Path, help="folder for results.json and benchmarks.md")
    parser.add_argument("--render", action="store_true", help="rewrite the markdown only")
    args = parser.parse_args(argv)
    results_path = (args.out or REPO / "benchmarks") / "results.json"
    docs_path = (args.out or REPO / "docs") / "benchmarks.md"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    if not args.render:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        data.use_private_home()
        only = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = set(only) - set(SECTIONS)
        if unknown:
            parser.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
        results["machine"] = {
            "cores": os.cpu_count(),
            "cpu": platform.processor() or platform.machine(),
            "cpu_flags": compute.cpu_flags(),
            "python": platform.python_version(),
            "smoke": args.smoke,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        }
        results.setdefault("seconds", {})
        for name in SECTIONS:
            if name not in only:
                continue
            print(f"[bench] {name} ...", flush=True)
            start = time.perf_counter()
            results[name] = _module(name).run(smoke=args.smoke)
            results[name]["machine"] = results["machine"]  # sections may come from other runs
            results["seconds"][name] = time.perf_counter() - start
            print(f"[bench] {name} done in {results['seconds'][name]:.0f} s", flush=True)
            results_path.parent.mkdir(parents=True, exist_ok=True)
            results_path.write_text(json.dumps(results, indent=1) + "\n")
    docs_path.parent.mkdir(parents=True, exist_ok=True)
    docs_path.write_text(report.render(results, sections()))
    print(f"[bench] wrote {results_path} and {docs_path}")


if __name__ == "__main__":
    main()
