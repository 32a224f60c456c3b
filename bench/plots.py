"""PNG charts for docs/img/: latency CDFs and throughput over time (small files)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.stats import cdf

_SIZE = (8, 4.5)
_DPI = 90


def latency_cdf(series: Mapping[str, Sequence[float]], title: str, out: Path) -> Path:
    """One empirical CDF line per series (ms, log x axis)."""
    fig, ax = plt.subplots(figsize=_SIZE, dpi=_DPI)
    for label, values in series.items():
        if values:
            xs, ys = cdf([max(v, 0.1) for v in values])
            ax.step(xs, ys, where="post", label=f"{label} (n={len(values)})")
    ax.set_xscale("log")
    ax.set_xlabel("latency, ms (log scale)")
    ax.set_ylabel("fraction of events")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def per_second_lines(
    series: Mapping[str, Sequence[float]], title: str, ylabel: str, out: Path
) -> Path:
    """One line per series of per-second values."""
    fig, ax = plt.subplots(figsize=_SIZE, dpi=_DPI)
    for label, values in series.items():
        if values:
            ax.plot(range(len(values)), values, label=label)
    ax.set_xlabel("seconds since the load started")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def drain_progress(progress: Sequence[tuple[float, int, int]], total: int, out: Path) -> Path:
    """Backlog drain: events in Kafka and events folded by the projection, over time."""
    fig, ax = plt.subplots(figsize=_SIZE, dpi=_DPI)
    ts = [p[0] for p in progress]
    ax.plot(ts, [p[1] for p in progress], label="in Kafka (reader acked)")
    ax.plot(ts, [p[2] for p in progress], label="folded (projection checkpoint)")
    ax.axhline(total, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("seconds since `pipeline run` started")
    ax.set_ylabel("events")
    ax.set_title(f"Backlog of {total:,} events drained end to end")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
