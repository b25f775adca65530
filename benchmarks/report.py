"""Render ``docs/benchmarks.md`` from the results: one table, then what each figure means.

The page is assembled from the sections ``benchmarks.run`` registers (``section.Section``):
each brings its rows and targets, its explanation and its notes; this module adds the machine
header, the wall times and the list of missed targets.
"""

from __future__ import annotations

from typing import Any

from benchmarks.section import Row, Section

HEADER = """# Benchmarks

Measured by `make bench` (`python -m benchmarks.run`) on {cores} cores ({cpu}, {flags}; Python
{python}), {date}{smoke}. The machine is shared and noisy: compare the figures measured side by
side in the same run (the ratios), not the absolute rates across runs. Reproduce one section
with `python -m benchmarks.run --only NAME`; `make bench-smoke` runs everything at toy sizes.
{earlier}
| # | Figure | This machine | Target | Met? |
|---|---|---|---|---|
"""

EXPLAIN = """
## What each figure is

"""

NOTES = """
## What limits the figures

On a shared 2-core machine the absolute rates swing with outside load (other jobs ran tests
beside this run), the ratios much less: read the ratios of figures measured side by side.

{missed}
"""


def _header(results: dict[str, Any]) -> str:
    m = results.get("machine", {"cores": "?", "cpu": "?", "python": "?", "date": "?"})
    flags = m.get("cpu_flags")
    return HEADER.format(
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


def _earlier_sections(results: dict[str, Any], machine: dict[str, Any]) -> str:
    """A line naming the sections earlier ``--only`` runs measured, by date, each group saying
    whether its machine (cores, CPU, flags, Python) was like the one above."""
    same = {key: value for key, value in machine.items() if key != "date"}
    groups: dict[tuple[str, bool], list[str]] = {}
    for name, section in results.items():
        if name in ("machine", "seconds") or not isinstance(section, dict):
            continue
        theirs = section.get("machine", {})
        if theirs.get("date") != machine.get("date"):
            alike = {key: value for key, value in theirs.items() if key != "date"} == same
            groups.setdefault((str(theirs.get("date")), alike), []).append(name)
    if not groups:
        return ""
    kinds = {True: "a machine like the one above", False: "another kind of machine"}
    listed = "; ".join(
        f"{', '.join(names)} ({date}, {kinds[alike]})"
        for (date, alike), names in sorted(groups.items(), reverse=True)
    )
    return (
        f"\nSections measured in earlier runs: {listed}. Rows measured in different runs "
        "compare only roughly: the machine's load changes between runs.\n"
    )


def _wall_times(results: dict[str, Any]) -> str:
    seconds = results.get("seconds", {})
    total = f"\nWall time per section (s): {', '.join(f'{k} {v:.0f}' for k, v in seconds.items())}"
    return total + f"; total {sum(seconds.values()) / 60:.1f} min.\n"


def _missed(rows: list[Row]) -> str:
    missed = [
        f"**{row.figure}**: {row.value}, target {row.target}" for row in rows if row.met == "**no**"
    ]
    return "\n".join(f"- Missed: {m}." for m in missed) or "Every target measured here was met."


def render(results: dict[str, Any], sections: dict[str, Section]) -> str:
    """The page for ``results`` (results.json), from the ``sections`` it holds, in their order.

    Args:
        results: section name -> that section's result, plus "machine" and "seconds".
        sections: section name -> its ``Section``, in page order (``benchmarks.run.sections()``).

    Example: ``render(json.loads(path.read_text()), run.sections())``.
    """
    measured = [(section, results[name]) for name, section in sections.items() if name in results]
    numbered = [(s.number, row) for s, result in measured for row in s.rows(result)]
    table = "".join("| " + " | ".join((number, *row)) + " |\n" for number, row in numbered)
    explain = EXPLAIN + "".join(section.explain for section, _ in measured)
    notes = dict.fromkeys(note for section, result in measured for note in section.notes(result))
    limits = NOTES.format(missed=_missed([row for _, row in numbered])) + "".join(notes)
    return _header(results) + table + _wall_times(results) + explain + limits
