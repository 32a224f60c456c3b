"""Pure statistics over latency samples and event times: no I/O, unit-tested.

Latencies are in milliseconds; times are POSIX seconds (floats). Percentiles use the
nearest-rank method, so every reported figure is one that was actually measured.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass


@dataclass(frozen=True, slots=True)
class Summary:
    """p50/p95/p99/max (and mean) of a latency sample, in milliseconds."""

    n: int
    p50: float
    p95: float
    p99: float
    max: float
    mean: float

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The nearest-rank q-th percentile (0 < q <= 100) of an ascending, non-empty sample."""
    if not sorted_values:
        raise ValueError("percentile of an empty sample")
    if not 0 < q <= 100:
        raise ValueError(f"q must be in (0, 100], got {q}")
    rank = math.ceil(q / 100 * len(sorted_values))
    return sorted_values[max(rank, 1) - 1]


def summarize(values: Iterable[float]) -> Summary | None:
    """The summary of a sample, or None when it is empty."""
    ordered = sorted(values)
    if not ordered:
        return None
    return _summary(ordered, sum(ordered) / len(ordered))


def _summary(ordered: list[float], mean: float) -> Summary:
    return Summary(
        n=len(ordered),
        p50=percentile(ordered, 50),
        p95=percentile(ordered, 95),
        p99=percentile(ordered, 99),
        max=ordered[-1],
        mean=mean,
    )


def latencies_ms(
    causes: Mapping[str, float], effects: Mapping[str, float]
) -> tuple[list[float], int]:
    """Effect time minus cause time per key, in ms, and how many causes have no effect."""
    out: list[float] = []
    missing = 0
    for key, at in causes.items():
        done = effects.get(key)
        if done is None:
            missing += 1
        else:
            out.append((done - at) * 1000.0)
    return out, missing


def cdf(values: Iterable[float]) -> tuple[list[float], list[float]]:
    """(x, y) of the empirical CDF: ascending values and the fraction at or below each."""
    ordered = sorted(values)
    n = len(ordered)
    return ordered, [(i + 1) / n for i in range(n)]


def per_second(times: Iterable[float], origin: float) -> list[int]:
    """Counts of events in each whole second after ``origin`` (earlier ones are dropped)."""
    counts: list[int] = []
    for t in times:
        if t < origin:
            continue
        bucket = int(t - origin)
        if bucket >= len(counts):
            counts.extend([0] * (bucket + 1 - len(counts)))
        counts[bucket] += 1
    return counts


def rate(count: int, seconds: float) -> float:
    """Events per second; 0 for a non-positive duration."""
    return count / seconds if seconds > 0 else 0.0


def span_rate(times: Sequence[float]) -> float:
    """Rate of a burst of n events from the first to the last: (n - 1) / (last - first)."""
    if len(times) < 2:
        return 0.0
    return rate(len(times) - 1, max(times) - min(times))


def ratio(ours: float, reference: float) -> float | None:
    """ours / reference, None when the reference is zero."""
    return ours / reference if reference else None


def summarize_censored(values: Iterable[float], missing: int) -> Summary | None:
    """Like :func:`summarize`, counting ``missing`` effects (never seen within the
    measurement window) as infinitely late, so that every percentile is a true lower
    bound: a percentile that falls among the missing is ``inf``. The mean is over the
    seen values only."""
    seen = sorted(values)
    if not seen and missing == 0:
        return None
    ordered = seen + [math.inf] * missing
    return _summary(ordered, sum(seen) / len(seen) if seen else math.inf)
