"""PNG charts for docs/img/: latency CDFs and throughput over time (small files)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.stats import cdf

_SIZE = (8, 4.5)
_DPI = 90


def _save(fig: Any, ax: Any, labels: tuple[str, str, str], legend: str, out: Path) -> Path:
    """Label the axes (x, y, title), add the grid and the legend, write ``out``."""
    xlabel, ylabel, title = labels
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc=legend, fontsize="small")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def latency_cdf(series: Mapping[str, Sequence[float]], title: str, out: Path) -> Path:
    """One empirical CDF line per series (ms, log x axis)."""
    fig, ax = plt.subplots(figsize=_SIZE, dpi=_DPI)
    for label, values in series.items():
        if values:
            xs, ys = cdf([max(v, 0.1) for v in values])
            ax.step(xs, ys, where="post", label=f"{label} (n={len(values)})")
    ax.set_xscale("log")
    labels = ("latency, ms (log scale)", "fraction of events", title)
    return _save(fig, ax, labels, "lower right", out)


def per_second_lines(
    series: Mapping[str, Sequence[float]], title: str, ylabel: str, out: Path
) -> Path:
    """One line per series of per-second values."""
    fig, ax = plt.subplots(figsize=_SIZE, dpi=_DPI)
    for label, values in series.items():
        if values:
            ax.plot(range(len(values)), values, label=label)
    return _save(fig, ax, ("seconds since the load started", ylabel, title), "best", out)
