"""Repeated runs: the interleaved order, the load average around each run, the worst run.

Pure apart from :func:`load1` (which reads ``os.getloadavg``); unit-tested in
tests/unit/bench/test_runs.py. Figures on this machine are noisy (two cores shared with
other work), so ``make bench`` runs every measured path several times, interleaved (path A
run 1, path B run 1, ..., path A run 2, ...) so that a quiet or a busy minute is shared
between the paths, reports every run, and judges each goal on the worst of them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass


def load1() -> float:
    """The 1-minute load average now."""
    return os.getloadavg()[0]


@dataclass(frozen=True, slots=True)
class LoadAround:
    """The 1-minute load average right before and right after one run."""

    before: float
    after: float

    def text(self) -> str:
        return f"{self.before:.2f} → {self.after:.2f}"


def interleave(paths: Sequence[str], runs: int) -> list[tuple[int, str]]:
    """(run, path) in the order to measure them: every path's run 1, then every run 2..."""
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    return [(run, path) for run in range(1, runs + 1) for path in paths]


def worst(values: Sequence[float | None], *, higher_is_better: bool) -> float:
    """The worst of the runs' values. A run without a value (did not finish, no sample)
    is the worst possible: 0 when higher is better, infinity when lower is better."""
    if not values:
        raise ValueError("worst of no runs")
    floor = 0.0 if higher_is_better else math.inf
    filled = [floor if v is None or math.isnan(v) else v for v in values]
    return min(filled) if higher_is_better else max(filled)


@dataclass(frozen=True, slots=True)
class Verdict:
    """One goal judged on the worst of the runs."""

    goal: str
    values: tuple[float | None, ...]
    worst: float
    met: bool
    unit: str = ""  # "ms", "x", "MiB", "/s": how to print the values

    def text(self, value: float | None) -> str:
        """One value as the table prints it."""
        if value is None:
            return "none (did not finish)"
        if math.isinf(value):
            return "∞ (not seen)"
        if self.unit == "x":
            return f"{value:.2f}x"
        if self.unit == "/s":  # below 100/s with a decimal: 24.9/s must not read as 25/s
            return (f"{value:,.0f}" if value >= 100 else f"{value:.1f}") + "/s"
        if self.unit == "ms":
            return (f"{value:,.0f}" if value >= 100 else f"{value:.1f}") + " ms"
        return f"{value:,.0f} {self.unit}".rstrip()


def judge_at_least(
    goal: str, values: Sequence[float | None], threshold: float, unit: str = ""
) -> Verdict:
    """A ">= threshold" goal (throughput, ratios): met only if every run met it."""
    w = worst(values, higher_is_better=True)
    return Verdict(goal, tuple(values), w, w >= threshold, unit)


def judge_at_most(
    goal: str, values: Sequence[float | None], threshold: float, unit: str = ""
) -> Verdict:
    """A "<= threshold" goal (latency, memory): met only if every run met it."""
    w = worst(values, higher_is_better=False)
    return Verdict(goal, tuple(values), w, w <= threshold, unit)
