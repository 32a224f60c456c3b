"""The real workflow and worker's results (:mod:`bench.workflow_bench`) and their markdown:
every run with the load average around it, the goals judged on the worst run, and where
the time and the CPU of one bootstrap go.

Pure: it takes measured results and returns text (unit-tested in
tests/unit/bench/test_workflow_report.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.report import fmt_ms, table
from bench.runs import Verdict, judge_at_least, judge_at_most

GOAL_COMPLETED_PER_S = 25.0
GOAL_LATENCY_P50_MS = 150.0
GOAL_RATE = 5.0


@dataclass(slots=True)
class Result:
    """One run of both phases (steady latency, then the saturation backlog)."""

    backlog: int
    rate: float
    seconds: float
    run: int = 1
    worker_env: dict[str, str] = field(default_factory=dict)
    # os.getloadavg() (1, 5, 15 min) before the steady phase, after it, after the backlog
    load_before: list[float] = field(default_factory=list)
    load_after_latency: list[float] = field(default_factory=list)
    load_after_saturation: list[float] = field(default_factory=list)
    # initiated -> queue.completed: p50/p95/p99/max/n/mean, the missing counted as infinite
    latency_ms: dict[str, float] | None = None
    latency_samples_ms: list[float] = field(default_factory=list)
    latency_missing: int = 0
    chain_gaps_p50_ms: dict[str, float] = field(default_factory=dict)
    history_p50_ms: list[tuple[str, float]] = field(default_factory=list)
    completed_per_second: float = 0.0
    backlog_per_second: float = 0.0
    backlog_completed: int = 0
    backlog_seconds: float = 0.0
    # process -> CPU ms per bootstrap over the saturation phase (and the steady one)
    cpu_ms_per_bootstrap: dict[str, float] = field(default_factory=dict)
    cpu_ms_per_bootstrap_steady: dict[str, float] = field(default_factory=dict)
    wall_seconds: float = 0.0


def saturation_value(result: Result) -> float | None:
    """Completed/s at saturation, None when fewer than two of the backlog completed."""
    return result.completed_per_second if result.backlog_completed > 1 else None


def latency_p50(result: Result) -> float | None:
    """The p50 of initiated -> queue.completed (``inf`` if most never completed)."""
    return None if result.latency_ms is None else result.latency_ms.get("p50")


def verdicts(results: Sequence[Result]) -> list[Verdict]:
    """Issue 17's two real-workflow goals, each on the worst of the runs."""
    if not results:
        return []
    runs = sorted(results, key=lambda r: r.run)
    rates = sorted({r.rate for r in runs})
    at = "/".join(f"{r:g}" for r in rates)
    note = "" if rates == [GOAL_RATE] else f" (measured at {at}/s; the goal is at {GOAL_RATE:g}/s)"
    return [
        judge_at_least(
            f"real workflow: bootstraps completed/s at saturation >= {GOAL_COMPLETED_PER_S:g}",
            [saturation_value(r) for r in runs],
            GOAL_COMPLETED_PER_S,
            "/s",
        ),
        judge_at_most(
            f"real workflow: initiated → `workflow.queue.completed` p50 <= "
            f"{GOAL_LATENCY_P50_MS:g} ms at {GOAL_RATE:g}/s" + note,
            [latency_p50(r) for r in runs],
            GOAL_LATENCY_P50_MS,
            "ms",
        ),
    ]


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return "∞ (not completed)" if math.isinf(value) else fmt_ms(value)


def _load(values: Sequence[float]) -> str:
    return f"{values[0]:.2f}" if values else "?"


def load_text(result: Result) -> str:
    """1-minute load: before the steady phase → after it → after the backlog."""
    return " → ".join(
        _load(v)
        for v in (result.load_before, result.load_after_latency, result.load_after_saturation)
    )


def run_rows(results: Sequence[Result]) -> list[list[str]]:
    """One row per run: both figures, what completed, and the load around it."""
    rows = []
    for r in sorted(results, key=lambda r: r.run):
        lat = r.latency_ms or {}
        sat = saturation_value(r)
        rows.append(
            [
                str(r.run),
                "-" if sat is None else f"{sat:.1f}",
                f"{r.backlog_completed:,} / {r.backlog:,} in {r.backlog_seconds:.1f} s "
                f"({r.backlog_per_second:.1f}/s)",
                f"{r.rate:g}/s for {r.seconds:g} s",
                f"{int(lat.get('n', 0)) - r.latency_missing:,} / {int(lat.get('n', 0)):,}",
                _ms(lat.get("p50")),
                _ms(lat.get("p95")),
                _ms(lat.get("p99")),
                _ms(lat.get("max")),
                load_text(r),
                f"{r.wall_seconds:.0f}",
            ]
        )
    return rows


RUN_HEADERS = [
    "run",
    "completed/s at saturation",
    "backlog completed (whole backlog /s)",
    "steady load",
    "completed / initiated",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "max ms",
    "load 1 min (before → after steady → after backlog)",
    "wall s",
]


def cpu_table(results: Sequence[Result]) -> str:
    """CPU ms per bootstrap of each process, saturation / steady, a column per run."""
    runs = sorted(results, key=lambda r: r.run)
    names: list[str] = []
    for r in runs:
        names += [n for n in r.cpu_ms_per_bootstrap if n not in names]
        names += [n for n in r.cpu_ms_per_bootstrap_steady if n not in names]

    def cell(r: Result, name: str) -> str:
        sat = r.cpu_ms_per_bootstrap.get(name)
        steady = r.cpu_ms_per_bootstrap_steady.get(name)
        return f"{_num(sat)} / {_num(steady)}"

    headers = ["process"] + [f"run {r.run}: saturation / steady, ms" for r in runs]
    rows = [[n] + [cell(r, n) for r in runs] for n in names]
    if runs:
        rows.append(
            ["total"]
            + [
                f"{_sum(r.cpu_ms_per_bootstrap)} / {_sum(r.cpu_ms_per_bootstrap_steady)}"
                for r in runs
            ]
        )
    return table(headers, rows)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _sum(values: dict[str, float]) -> str:
    return f"{sum(values.values()):.1f}" if values else "-"


def chain_table(results: Sequence[Result]) -> str:
    """p50 ms of each step of the chain (commit timestamps), a column per run."""
    runs = sorted(results, key=lambda r: r.run)
    steps: list[str] = []
    for r in runs:
        steps += [s for s in r.chain_gaps_p50_ms if s not in steps]
    headers = ["chain step (commit → next commit)"] + [f"run {r.run}: p50 ms" for r in runs]
    rows = [[s] + [_ms(r.chain_gaps_p50_ms.get(s)) for r in runs] for s in steps]
    return table(headers, rows)


def history_table(result: Result) -> str:
    """One run's Temporal history: p50 ms since the execution started of each event."""
    return table(
        ["Temporal history event", "p50 ms since the execution started"],
        [[label, fmt_ms(ms)] for label, ms in result.history_p50_ms],
    )


def cpu_ceiling(cpu_ms: float, cpus: float) -> float | None:
    """Bootstraps/s that ``cpus`` CPUs allow at ``cpu_ms`` CPU ms per bootstrap."""
    return cpus * 1000.0 / cpu_ms if cpu_ms > 0 and cpus > 0 else None


def cpu_bound_lines(results: Sequence[Result], cpus: int | None) -> list[str]:
    """Per run: the saturation rate against what the measured CPU per bootstrap allows on
    this machine's CPUs, all watched processes together, and the dearest process alone."""
    out = []
    for r in sorted(results, key=lambda r: r.run):
        total = sum(r.cpu_ms_per_bootstrap.values())
        ceiling = cpu_ceiling(total, float(cpus or 0))
        if ceiling is None or not r.cpu_ms_per_bootstrap:
            continue
        name, dearest = max(r.cpu_ms_per_bootstrap.items(), key=lambda kv: kv[1])
        alone = cpu_ceiling(dearest, 1.0)
        out.append(
            f"- run {r.run}: {total:.0f} ms of CPU per bootstrap in the watched processes "
            f"at saturation; {cpus} CPUs allow at most {ceiling:.1f}/s at that cost "
            f"(measured {r.completed_per_second:.1f}/s). The dearest, {name}, "
            f"{dearest:.0f} ms: {alone:.1f}/s per CPU it gets."
        )
    return out


def latency_reason_lines(results: Sequence[Result]) -> list[str]:
    """Per run: the latency p50 split in its two halves (``label: a -> b`` entries of the
    chain gaps) and the dearest single step of the chain."""
    out = []
    for r in sorted(results, key=lambda r: r.run):
        halves = {k: v for k, v in r.chain_gaps_p50_ms.items() if ": " in k}
        steps = {k: v for k, v in r.chain_gaps_p50_ms.items() if ": " not in k}
        if not steps:
            continue
        dearest, ms = max(steps.items(), key=lambda kv: kv[1])
        lat = r.latency_ms or {}
        split = "; ".join(f"{k} p50 {_ms(v)} ms" for k, v in halves.items())
        out.append(
            f"- run {r.run}: initiated → `workflow.queue.completed` p50 {_ms(lat.get('p50'))} ms"
            + (f"; {split}" if split else "")
            + f"; the dearest step {dearest}, p50 {_ms(ms)} ms."
        )
    return out


def section(results: Sequence[Result], temporal: str, cpus: int | None = None) -> list[str]:
    """The real-workflow subsection of ``make bench``'s part of docs/benchmarks.md."""
    if not results:
        return []
    runs = sorted(results, key=lambda r: r.run)
    first = runs[0]
    parts = [
        "### Real workflow and worker",
        "",
        "`pipeline run` and `pipeline worker` (the real `OrganizationBootstrapWorkflow` with "
        "its activities, the local DNS and e-mail providers) on a fresh database, topic and "
        f"task queue each run (`bench/workflow_bench.py`); Temporal: {temporal}. After "
        f"three warm-up bootstraps, a steady {first.rate:g} `organization.bootstrap.initiated`"
        f"/s for {first.seconds:g} s (one transaction each): initiated → "
        "`workflow.queue.completed`, by the two events' commit timestamps, a bootstrap not "
        "completed in time counting as infinitely late. Then a backlog of "
        f"{first.backlog:,} initiated events committed as fast as one connection can: "
        "completed/s at saturation is the rate of `workflow.queue.completed` commits from "
        "the first to the last, the whole backlog's rate counts from the first initiated "
        "commit. Load: the 1-minute load average before the steady phase, after it and "
        "after the backlog.",
        "",
        table(RUN_HEADERS, run_rows(runs)),
        "",
        "**Where the time goes.** The p50 of each step of one bootstrap's chain, by commit "
        "timestamps, in the steady phase, then of its two halves (the p50s of the steps need "
        "not add up to the whole's):",
        "",
        chain_table(runs),
        "",
        *latency_reason_lines(runs),
        "",
        f"Temporal's own history of up to 20 of run {first.run}'s steady-phase workflows "
        "(the commonest shape): p50 time of each event since the execution started.",
        "",
        history_table(first),
        "",
        "**CPU per bootstrap**, each process's CPU time over the phase divided by its "
        "bootstraps (`/proc/<pid>/stat`; `pipeline run` with its reader process, PostgreSQL "
        "with its backends). The services' idle "
        "work over the phase is included, so a slower phase shows them dearer.",
        "",
        cpu_table(runs),
    ]
    bound = cpu_bound_lines(runs, cpus)
    if bound:
        parts += ["", "**What the CPU allows** (the measured reason for the saturation rate):", ""]
        parts += bound
    return parts
