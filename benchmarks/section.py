"""What a benchmark section puts on docs/benchmarks.md: its rows, its explanation, its notes.

Each section module (``benchmarks/feeding.py``, ...) ends with a ``SECTION`` that knows its own
result keys and targets; ``benchmarks.run`` registers the modules and ``benchmarks.report``
assembles the page from their sections without knowing any figure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple


class Row(NamedTuple):
    """One line of the table: a figure, its value on this machine, its target, whether met."""

    figure: str
    value: str
    target: str = "-"
    met: str = "n/a"


def met(ok: bool | None) -> str:
    """The table's "Met?" cell: ``yes``, ``**no**`` (bold, so misses stand out) or ``n/a``.

    Example: ``Row("Speed-up", "2.0x", ">= 1.7x", met(2.0 >= 1.7))``.
    """
    return "n/a" if ok is None else ("yes" if ok else "**no**")


def no_notes(result: dict[str, Any]) -> list[str]:
    """A section with nothing to add under "What limits the figures"."""
    return []


@dataclass(frozen=True)
class Section:
    """A section's part of the page, given its entry of results.json.

    Attributes
    ----------
    number : the label of its rows in the table's first column.
    rows : its table rows, with their targets.
    explain : its item of "What each figure is" (shown when the results hold the section).
    notes : its paragraphs of "What limits the figures"; a paragraph several sections return
        (the same text) is shown once.
    """

    number: str
    rows: Callable[[dict[str, Any]], list[Row]]
    explain: str
    notes: Callable[[dict[str, Any]], list[str]] = no_notes
