"""The benchmark scripts keep working: ``benchmarks.run --smoke``, a group of sections a test.

Benchmarks are not tests: nothing here checks a timing, only that every section ran and
produced positive figures, and that the published page is the published results rendered.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import report, run

REPO = Path(__file__).resolve().parents[1]

SECTIONS = ["feeding", "loader", "install", "compute", "scaling", "quality", "distributed", "peers"]
SIGNED = {  # the races' differences
    "dice_gain",
    "half_budget_dice_gain",
    "dice_gain_vs_smp",
    "dice_gain_vs_newcomer",
}


def _numbers(value):
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _numbers(item)
    elif isinstance(value, list):
        for item in value:
            yield from _numbers(item)


def _feeding(results: dict) -> None:
    assert results["feeding"]["cases"][0]["ratio"] > 0
    assert results["feeding"]["cases"][0]["precision"] in ("float32", "mixed_bfloat16")


def _loader(results: dict) -> None:
    assert results["loader"]["workers2_samples_s"] > 0
    assert results["loader"]["prepared_later_vs_brine_style"] > 0


def _install(results: dict) -> None:
    assert results["install"]["http"]["ours_s"] > 0


def _compute(results: dict) -> None:
    assert results["compute"]["variants"]["keras_fp32"]["img_s"] > 0
    profile = results["compute"]["profiles"]["float32"]["primitive_ms_per_step"]
    assert any(kind.startswith("convolution") for kind in profile), profile


def _scaling(results: dict) -> None:
    assert results["scaling"]["create_folds_s"] > 0


def _quality(results: dict) -> None:
    runs = results["quality"]["runs"]
    assert [run["who"] for run in runs] == ["segtrain", "newcomer", "segtrain"]
    assert all(run["dice"] > 0 for run in runs)


def _distributed(results: dict) -> None:
    assert results["distributed"]["processes"]["same_loss"] is True


def _multiclass(results: dict) -> None:
    camvid = results["multiclass"]
    assert 0 <= camvid["majority"]["miou"] <= 1 and 0 <= camvid["segtrain"]["miou"] <= 1
    assert 0 <= camvid["smp"]["miou"] <= 1 and camvid["smp"]["epochs"] >= 1
    for who in ("baseline", "smp"):
        assert set(camvid["segtrain"]["per_class_iou"]) == set(camvid[who]["per_class_iou"])


def _torch_loader(results: dict) -> None:
    assert results["torch_loader"]["loader"]["to_torch_vs_opencv"] > 0
    feeding = results["torch_loader"]["feeding"]
    for feed in ("workers2", "main_process"):  # each against the memory rounds around it
        assert len(feeding[feed]["round_ratios"]) == feeding["rounds"]
        assert all(ratio > 0 for ratio in feeding[feed]["round_ratios"])


def _peers(results: dict) -> None:
    peers = results["peers"]
    assert [run["who"] for run in peers["runs"]] == ["segtrain", "smp", "newcomer"]  # 1 repeat
    assert peers["dice_gain_vs_smp"] == pytest.approx(
        peers["segtrain_mean_dice"] - peers["smp_mean_dice"]
    )
    assert all(run["dice"] > 0 and run["epochs"] >= 1 and run["img_s"] > 0 for run in peers["runs"])
    # one split, one scoring: every entry saw the same trivial mask's dice
    assert {run["all_foreground_dice"] for run in peers["runs"]} == {peers["all_foreground_dice"]}


CHECKS = {
    "feeding": _feeding,
    "loader": _loader,
    "install": _install,
    "compute": _compute,
    "scaling": _scaling,
    "quality": _quality,
    "distributed": _distributed,
    "multiclass": _multiclass,
    "torch_loader": _torch_loader,
    "peers": _peers,
}
# The smoke run, cut into groups of sections that each test runs alone (--only), so that the
# suite's workers share them out: one smoke run of every section was the suite's longest test.
GROUPS = [
    ["feeding"],
    ["loader", "install", "scaling", "torch_loader"],
    ["compute"],
    ["quality"],
    ["distributed"],
    ["multiclass"],
    ["peers"],
]


def test_the_smoke_groups_hold_every_section_once():
    assert sorted(name for group in GROUPS for name in group) == sorted(run.SECTIONS)
    assert set(CHECKS) == set(run.SECTIONS)


@pytest.mark.slow
@pytest.mark.timeout(0)  # a minute on an idle machine, several times that on a busy one: no guard
@pytest.mark.parametrize("group", GROUPS, ids=["+".join(group) for group in GROUPS])
def test_smoke_mode_writes_every_section(group, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", "--only", ",".join(group)]
        + ["--out", str(tmp_path)],
        cwd=REPO,
        env={**os.environ, "BENCH_DATA": str(tmp_path / "data")},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["machine"]["smoke"] is True
    assert set(results["machine"]["cpu_flags"]) >= {"avx2", "avx512_bf16", "amx_bf16"}
    assert set(results) - {"machine", "seconds"} == set(group)
    markdown = (tmp_path / "benchmarks.md").read_text()
    sections = run.sections()
    for section in group:
        if section in SECTIONS:
            figures = list(_numbers({k: v for k, v in results[section].items() if k not in SIGNED}))
            assert figures, section
            assert all(f >= 0 for f in figures), section
        CHECKS[section](results)
        assert f"| {sections[section].number} |" in markdown, section
    if "peers" in group:
        assert "| 10 | segtrain defaults vs smp, same budget (1 seed each): dice gain |" in markdown
    if "multiclass" in group:
        assert "| 8 | segtrain vs the best peer, same budget: mIoU gain |" in markdown


def test_profile_sums_onednn_time_per_kind_between_the_marks():
    from benchmarks.compute import PROFILE_MARK, primitive_ms

    line = "onednn_verbose,v1,primitive,exec,cpu,{},brg:avx2,{},src:f32,,,mb2ic3oc32,{}"
    lines = [
        line.format("convolution", "forward_training", "9.0"),  # a warm-up step: not counted
        PROFILE_MARK,
        line.format("convolution", "backward_weights", "3.0"),
        line.format("reorder", "undef", "1.0"),
        "onednn_verbose,v1,primitive,create:cache_hit,cpu,reorder,jit,undef,,,,0.5",
        line.format("convolution", "backward_weights", "5.0"),
        PROFILE_MARK,
        line.format("reorder", "undef", "7.0"),
    ]
    assert primitive_ms(lines, steps=2) == {"convolution backward_weights": 4.0, "reorder": 0.5}


def test_published_page_is_rendered_from_the_published_results():
    """docs/benchmarks.md says exactly what benchmarks/results.json holds (a full run)."""
    results = json.loads((REPO / "benchmarks" / "results.json").read_text())
    assert results["machine"]["smoke"] is False
    assert set(SECTIONS) <= set(results["seconds"])
    assert (REPO / "docs" / "benchmarks.md").read_text() == report.render(results, run.sections())


def test_the_page_takes_rows_explanation_and_notes_from_each_section():
    """report knows no section: a made-up one brings its rows, target, text and notes."""
    from benchmarks.section import Row, Section, met

    def rows(result):
        return [Row("Toy speed-up", f"{result['x']:.1f}x", ">= 2x", met(result["x"] >= 2))]

    toy = Section("T", rows, "T. **Toy** (`--only toy`).\n", lambda result: ["\n- Shared.\n"])
    page = report.render({"toy": {"x": 1.5}, "toy2": {"x": 3.0}}, {"toy": toy, "toy2": toy})
    assert "| T | Toy speed-up | 1.5x | >= 2x | **no** |" in page
    assert "| T | Toy speed-up | 3.0x | >= 2x | yes |" in page
    assert "- Missed: **Toy speed-up**: 1.5x, target >= 2x." in page
    assert page.count("T. **Toy**") == 2 and page.count("- Shared.") == 1


def test_the_peers_budget_comes_from_the_environment(monkeypatch):
    from benchmarks import peers

    monkeypatch.delenv(peers.MINUTES_VARIABLE, raising=False)
    assert peers.budget_s(smoke=False) == 5 * 60 and peers.budget_s(smoke=True) < 60
    monkeypatch.setenv(peers.MINUTES_VARIABLE, "0.5")
    assert peers.budget_s(smoke=False) == 30 and peers.budget_s(smoke=True) == 30
    for bad in ("five", "0", "-1", "nan", "inf", "1e9"):
        monkeypatch.setenv(peers.MINUTES_VARIABLE, bad)
        with pytest.raises(SystemExit, match=f"BENCH_PEERS_MINUTES={bad!r} is not a number"):
            peers.budget_s(smoke=False)


def test_the_page_names_each_earlier_run_by_date_and_says_if_its_machine_differs():
    def machine(date, flags):
        return {"cores": 2, "cpu": "x86_64", "cpu_flags": flags, "python": "3.11", "date": date}

    bf16 = {"avx2": True, "avx512_bf16": True}
    results = {
        "machine": machine("2026-12-07 01:41 UTC", bf16),
        "multiclass": {"machine": machine("2026-12-07 01:41 UTC", bf16)},
        "peers": {"machine": machine("2026-12-07 00:56 UTC", bf16)},
        "loader": {"machine": machine("2026-12-04 19:21 UTC", {"avx2": True})},
        "install": {"machine": machine("2026-12-04 19:21 UTC", {"avx2": True})},
        "seconds": {"peers": 1.0},
    }
    line = report._earlier_sections(results, results["machine"])
    assert "multiclass" not in line
    assert "peers (2026-12-07 00:56 UTC, a machine like the one above)" in line
    assert "loader, install (2026-12-04 19:21 UTC, another kind of machine)" in line
    assert report._earlier_sections({"machine": results["machine"]}, results["machine"]) == ""
