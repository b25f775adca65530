"""curves.png: a run's loss and metrics per epoch, train against validation, drawn.

The best epoch (by the run's ``--monitor``: the weights best.weights.h5 holds) is marked on
every plot,
and epochs cut short (``--time-limit``: history's ``partial``) are hollow points. matplotlib
is imported only when drawing.

    draw(RunFolder(run).history(), "membrane: small at 256 px", run / "curves.png", "val_loss")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import brinelite
from segtrain.history import best_epoch, describe, metrics


def draw(history: dict[str, list[float]], title: str, path: Path, monitor: str) -> Path:
    """Plot each metric of ``history`` (``segtrain.history.parse``'s) into the PNG ``path``.

    One plot per metric, side by side, under ``title``; the file is written atomically.

    Example::

        draw({"epoch": [0, 1], "loss": [0.7, 0.5], "val_loss": [0.6, 0.4]}, "run", out)
    """
    from matplotlib.figure import Figure

    shown = metrics(history)
    figure = Figure(figsize=(5 * len(shown), 4), layout="constrained")
    row = figure.subplots(1, len(shown), squeeze=False)[0]
    for axes, metric in zip(row, shown, strict=True):
        _plot_metric(axes, history, metric, monitor)
    figure.suptitle(title)
    with brinelite.atomic_write(path, "wb") as png:
        figure.savefig(png, format="png", dpi=80)
    return path


def _plot_metric(axes: Any, history: dict[str, list[float]], metric: str, monitor: str) -> None:
    """One metric's curves (train, validation) on ``axes``: partial epochs hollow, best marked."""
    from matplotlib.ticker import MaxNLocator

    epochs = [int(e) + 1 for e in history.get("epoch", [])]
    partial = [flag == 1 for flag in history.get("partial", [0.0] * len(epochs))]
    whole = [not cut for cut in partial]
    for prefix, label in (("", "train"), ("val_", "validation")):
        values = history.get(prefix + metric, [])
        (line,) = axes.plot(epochs, values, label=label)
        axes.scatter(_pick(epochs, whole), _pick(values, whole), color=line.get_color(), s=12)
        hollow = {"facecolors": "white", "edgecolors": line.get_color(), "zorder": 3}
        axes.scatter(_pick(epochs, partial), _pick(values, partial), **hollow)
    if any(partial):  # one legend entry for both curves' hollow points
        axes.scatter([], [], facecolors="white", edgecolors="grey", label="epoch cut short")
    best = best_epoch(history, monitor)
    if best is not None:
        axes.axvline(
            epochs[best],
            color="grey",
            linestyle="--",
            linewidth=1,
            label=f"best: epoch {epochs[best]} ({describe(monitor)})",
        )
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set(title=metric.replace("_", " "), xlabel="epoch")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)


def _pick(values: list[Any], keep: list[bool]) -> list[Any]:
    """The values whose ``keep`` flag is set."""
    return [value for value, kept in zip(values, keep, strict=True) if kept]
