"""The markdown of ``make bench``'s end-to-end section: every run of every path, the load
average around each, and the goals of issue 17 judged on the worst run.

Pure apart from nothing: it takes the measured results and returns text (unit-tested in
tests/unit/bench/test_e2e_report.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from bench import cpu_share
from bench.latency import PathResult
from bench.report import fmt_ms
from bench.runs import Verdict, judge_at_least, judge_at_most
from bench.stats import Summary, ratio, summarize_censored
from bench.throughput import StartDrain

GOAL_P50_MS = 20.0
GOAL_P99_MS = 75.0
GOAL_LISTEN_RATIO = 2.0
GOAL_KAFKA_P50_MS = 3.0
GOAL_KAFKA_P99_MS = 15.0
GOAL_MAX_MS = 1000.0
GOAL_START_RATIO = 0.9
GOAL_RSS_MIB = 300.0

METRIC_LABELS = {
    "commit_to_kafka": "commit → Kafka append (all events)",
    "commit_to_pending_event": "commit → `workflow.queue.pending` committed",
    "commit_to_claimed_event": "commit → `workflow.queue.claimed` committed",
    "commit_to_projection_row": "commit → queue projection row committed",
    "commit_to_workflow_start": "commit → Temporal workflow start",
    "commit_to_started_event": "commit → `workflow_started` event committed",
}
PATH_LABELS = {
    "direct": "bare Temporal client (floor)",
    "listen": "LISTEN/NOTIFY + worker",
    "poll": "polling every 1 s",
    "ours": "`pipeline run` (WAL → Kafka → Faust)",
}


def summary(result: PathResult, metric: str) -> Summary | None:
    if metric not in result.samples:
        return None
    return summarize_censored(result.samples[metric], result.missing.get(metric, 0))


def ms(value: float, settle: float) -> str:
    return f"> {settle:.0f} s (not started)" if math.isinf(value) else fmt_ms(value)


def latency_rows(results: Sequence[PathResult], settle: float) -> list[list[str]]:
    """One row per run, path and interval: seen/expected, p50, p95, p99, max, load."""
    rows = []
    for res in sorted(results, key=lambda r: (r.run, list(PATH_LABELS).index(r.path))):
        for metric, label in METRIC_LABELS.items():
            s = summary(res, metric)
            if s is None:
                continue
            seen = s.n - res.missing.get(metric, 0)
            rows.append(
                [
                    str(res.run),
                    PATH_LABELS[res.path],
                    label,
                    f"{seen:,} / {s.n:,}",
                    ms(s.p50, settle),
                    ms(s.p95, settle),
                    ms(s.p99, settle),
                    ms(s.max, settle),
                    res.load_average.text() if res.load_average else "-",
                ]
            )
    return rows


def _runs_of(results: Sequence[PathResult], path: str) -> dict[int, PathResult]:
    return {r.run: r for r in results if r.path == path}


def _stat(result: PathResult | None, metric: str, field: str) -> float | None:
    s = summary(result, metric) if result is not None else None
    return None if s is None else float(getattr(s, field))


def latency_verdicts(results: Sequence[PathResult]) -> list[Verdict]:
    """Issue 17's steady-load goals for ``ours``, each on the worst run; a run that lacks
    the figure (path not run) is left out, a workflow never started counts as infinite."""
    ours = _runs_of(results, "ours")
    if not ours:
        return []
    listen = _runs_of(results, "listen")
    runs = sorted(ours)
    start = "commit_to_workflow_start"
    kafka = "commit_to_kafka"
    out = [
        judge_at_most(
            f"commit → workflow start p50 <= {GOAL_P50_MS:.0f} ms",
            [_stat(ours[r], start, "p50") for r in runs],
            GOAL_P50_MS,
            "ms",
        ),
        judge_at_most(
            f"commit → workflow start p99 <= {GOAL_P99_MS:.0f} ms",
            [_stat(ours[r], start, "p99") for r in runs],
            GOAL_P99_MS,
            "ms",
        ),
        judge_at_most(
            f"commit → workflow start: none later than {GOAL_MAX_MS:,.0f} ms (max)",
            [_stat(ours[r], start, "max") for r in runs],
            GOAL_MAX_MS,
            "ms",
        ),
        judge_at_most(
            f"commit → Kafka p50 <= {GOAL_KAFKA_P50_MS:.0f} ms",
            [_stat(ours[r], kafka, "p50") for r in runs],
            GOAL_KAFKA_P50_MS,
            "ms",
        ),
        judge_at_most(
            f"commit → Kafka p99 <= {GOAL_KAFKA_P99_MS:.0f} ms",
            [_stat(ours[r], kafka, "p99") for r in runs],
            GOAL_KAFKA_P99_MS,
            "ms",
        ),
    ]
    paired = [r for r in runs if r in listen]
    if paired:
        ratios = []
        for r in paired:
            mine, theirs = _stat(ours[r], start, "p50"), _stat(listen[r], start, "p50")
            ratios.append(None if mine is None or theirs is None else ratio(mine, theirs))
        out.append(
            judge_at_most(
                f"commit → start p50 <= {GOAL_LISTEN_RATIO:.0f}x LISTEN/NOTIFY's (same run)",
                ratios,
                GOAL_LISTEN_RATIO,
                "x",
            )
        )
    return out


def start_rows(drains: Sequence[StartDrain]) -> list[list[str]]:
    rows = []
    for d in drains:
        rows.append(
            [
                str(d.run),
                f"{d.ours_rate:.1f} ({d.ours_started:,} of {d.bootstraps:,} started)",
                f"{d.bare_sequential_rate:.1f}",
                f"{d.bare_concurrent_rate:.1f}",
                f"{ratio(d.ours_rate, d.bare_concurrent_rate) or 0:.2f}x",
                "-" if d.ours_peak_rss_mib is None else f"{d.ours_peak_rss_mib:.0f}",
                d.load.text() if d.load else "-",
            ]
        )
    return rows


# The start drain's core table: Temporal's server first (its share is what the ratio
# follows), then every other role of bench.cpu_share in its order.
CORE_ROLES: tuple[str, ...] = (
    cpu_share.TEMPORAL,
    *(role for role in cpu_share.ROLE_ORDER if role != cpu_share.TEMPORAL),
)


def start_core_rows(drains: Sequence[StartDrain]) -> list[list[str]]:
    """Per run and path: cores each role used from the first start to the last."""
    rows = []
    for d in drains:
        for path, cores in (("ours", d.ours_cores), ("bare", d.bare_cores)):
            if not cores:
                continue
            rows.append(
                [str(d.run), path]
                + [f"{cores[r]:.2f}" if r in cores else "-" for r in CORE_ROLES]
                + [f"{sum(cores.values()):.2f}"]
            )
    return rows


def start_verdicts(drains: Sequence[StartDrain], rss: Sequence[float | None]) -> list[Verdict]:
    out = []
    if drains:
        concurrency = drains[0].bare_concurrency
        out.append(
            judge_at_least(
                f"bootstrap start drain >= {GOAL_START_RATIO}x the bare client "
                f"({concurrency} at a time)",
                [ratio(d.ours_rate, d.bare_concurrent_rate) for d in drains],
                GOAL_START_RATIO,
                "x",
            )
        )
    if rss:
        out.append(
            judge_at_most(
                f"peak RSS of `pipeline run` <= {GOAL_RSS_MIB:.0f} MiB", rss, GOAL_RSS_MIB, "MiB"
            )
        )
    return out


def load_rows(results: Sequence[PathResult]) -> list[list[str]]:
    return [
        [
            str(r.run),
            PATH_LABELS[r.path],
            f"{r.load.get('bootstrap_rate', 0):.1f}",
            f"{r.load.get('other_rate', 0):.0f}",
            fmt_ms(r.load.get("max_behind_ms")),
        ]
        for r in sorted(results, key=lambda r: (r.run, list(PATH_LABELS).index(r.path)))
    ]


def load_core_table(results: Sequence[PathResult]) -> tuple[list[str], list[list[str]]]:
    """(header, rows): per run and path, the cores each role used during the steady load
    (the roles that used any in some path), the whole machine's busy and stolen cores.
    Empty rows for results from before the machine was watched."""
    measured = [r for r in results if r.machine is not None]
    ordered = sorted(measured, key=lambda r: (r.run, list(PATH_LABELS).index(r.path)))
    used = set(cpu_share.roles_used([r.cores for r in ordered]))
    roles = [role for role in CORE_ROLES if role in used]
    rows = [
        [str(r.run), PATH_LABELS[r.path], *cpu_share.core_cells(r.cores, r.machine, roles)]
        for r in ordered
    ]
    return ["run", "path", *roles, "machine busy", "stolen"], rows


def machine_line(machine: Mapping[str, str]) -> str:
    return f"{machine.get('nproc', '?')} CPUs, {machine.get('cpu', '?')}"
