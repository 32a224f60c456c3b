"""The end-to-end section of docs/benchmarks.md as ``make bench`` writes it, and its charts.

Assembles the pieces of :mod:`bench.e2e_report` (latency and starts),
:mod:`bench.drain_report` (the event drain), :mod:`bench.stages` (the stage table) and
:mod:`bench.workflow_report` (the real workflow and worker).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench import plots, throughput, workflow_report
from bench.drain import Round
from bench.drain_report import drain_section
from bench.drain_report import verdicts as drain_verdicts
from bench.e2e_report import (
    CORE_ROLES,
    METRIC_LABELS,
    PATH_LABELS,
    latency_rows,
    latency_verdicts,
    load_core_table,
    load_rows,
    start_core_rows,
    start_rows,
    start_verdicts,
)
from bench.harness import REPO
from bench.latency import PathResult
from bench.report import machine_table, table, verdict_table
from bench.stages import StageRun, stage_table

IMG = REPO / "docs" / "img"
DOC = REPO / "docs" / "benchmarks.md"


def _how(args: argparse.Namespace, machine: dict[str, str]) -> str:
    worker = (
        "The worker is `pipeline worker` with the local DNS/e-mail providers. "
        if args.real_worker
        else "The worker is a stand-in registered as `OrganizationBootstrapWorkflow` that "
        "returns at once (`bench/standin.py`): only the start is measured. "
    )
    return (
        "**How it is measured.** Every path runs in its own fresh database, under the same "
        f"open-loop load: {args.bootstrap_rate:.0f} `organization.bootstrap.initiated`/s (one "
        f"transaction each) plus {args.other_rate:.0f} other events/s (`invitation.email.sent`, "
        f"10 per transaction) for {args.seconds:.0f} s, and each starts the same workflow "
        "(`org-bootstrap-{org_id}`, same id policies) on its own task queue. "
        + worker
        + f"Temporal: {machine.get('temporal_persistence', '?')}. Commit times are the "
        "database's: the WAL commit records' timestamps, read from a `test_decoding` slot "
        "created before the load (the same value as the reader's `commit_ts` header). Start "
        "times are Temporal's (each execution's `start_time`), Kafka times the broker's "
        "(`LogAppendTime`). Percentiles count a workflow not started within "
        f"{args.settle:.0f} s after the load as infinitely late (lower bounds). Each path ran "
        f"{args.runs} time(s), interleaved (run 1 of every path, then run 2, ...); "
        '"load" is the 1-minute load average before → after each run, on a machine '
        "shared with other work."
    )


def _load_cores(results: list[PathResult]) -> list[str]:
    header, rows = load_core_table(results)
    if not rows:
        return []
    return [
        "",
        "Where the machine's cores went during each path's load, from its first commit to "
        "its last (CPU seconds per second of every process by role, from `/proc` every "
        "0.25 s: `bench/cpu_share.py`; the whole machine's busy and stolen cores from "
        "`/proc/stat`; two cores in all). A path that needs more than the cores left to it "
        "queues its starts, and its latency grows for as long as the load lasts.",
        "",
        table(header, rows),
    ]


def build_body(data: dict[str, object], args: argparse.Namespace) -> str:
    results: list[PathResult] = data["latency_results"]  # type: ignore[assignment]
    starts: list[throughput.StartDrain] = data["starts"]  # type: ignore[assignment]
    rounds: list[Round] = data["drain_rounds"]  # type: ignore[assignment]
    machine: dict[str, str] = data["machine"]  # type: ignore[assignment]
    mode = "full" if args.full else "short"
    parts = [
        f"Measured {data['date']} with `{data['command']}` ({mode} mode"
        + (
            "; the short mode scales the full load (100 + 1,000 events/s for 60 s, a "
            "100,000-event drain) down to "
            f"{args.bootstrap_rate:.0f} + {args.other_rate:.0f} events/s for "
            f"{args.seconds:.0f} s and a {args.events:,}-event drain"
            + (
                "; the real workflow's 60 s at 5 bootstraps/s and 500-bootstrap backlog to "
                f"{args.workflow_seconds:g} s at {args.workflow_rate:g}/s and "
                f"{args.workflow_backlog:,} bootstraps"
                if getattr(args, "workflow", False)
                else ""
            )
            if not args.full
            else ""
        )
        + "). Raw samples: `bench/results/` (git-ignored).",
        "",
    ]
    if results:
        parts += [
            _how(args, machine),
            "",
            "### Latency at steady load",
            "",
            table(
                [
                    "run",
                    "path",
                    "interval",
                    "seen / expected",
                    "p50 ms",
                    "p95 ms",
                    "p99 ms",
                    "max ms",
                    "load 1 min",
                ],
                latency_rows(results, args.settle),
            ),
            "",
            table(
                ["run", "path", "bootstraps/s achieved", "other events/s", "generator behind ms"],
                load_rows(results),
            ),
            *_load_cores(results),
            "",
            "![commit → workflow start CDF](img/bench-latency-cdf.png)",
            "",
            "![workflow starts per second](img/bench-throughput-steady.png)",
        ]
    ours = sorted((r for r in results if r.path == "ours"), key=lambda r: r.run)
    if ours:
        parts += [
            "",
            "### Stage table: where commit → workflow start goes (`pipeline run`)",
            "",
            "Per bootstrap of the steady load, the time between consecutive stages, each "
            "stage's time being when it became durable or visible (WAL commit record, "
            "broker append, Temporal's `start_time`); p50 / p99 over the bootstraps that "
            "reached both ends. The p50s of the intervals need not add up to the whole's p50.",
            "",
            stage_table(
                [
                    StageRun(r.run, r.stages, r.load_average.text() if r.load_average else "")
                    for r in ours
                ]
            ),
            "",
            "![pipeline stages CDF](img/bench-latency-stages.png)",
        ]
    verdicts = latency_verdicts(results)
    if starts or rounds:
        parts += ["", "### Throughput", ""]
        parts += drain_section(rounds, args.bootstrap_every)
    if starts:
        parts += [
            "",
            f"**Workflow starts.** A backlog of {args.bootstraps:,} bootstraps drained into "
            "workflow starts by `pipeline run` (started after the backlog), against a bare "
            "Temporal client starting as many, one at a time and "
            f"{starts[0].bare_concurrency} at a time (the starts `pipeline run` keeps in "
            "flight); rates from the first start to the last.",
            "",
            table(
                [
                    "run",
                    "ours starts/s",
                    "bare 1 at a time",
                    f"bare {starts[0].bare_concurrency} at a time",
                    "ours / bare (same concurrency)",
                    "peak RSS MiB",
                    "load 1 min",
                ],
                start_rows(starts),
            ),
        ]
        cores = start_core_rows(starts)
        if cores:
            parts += [
                "",
                "Where the machine's cores went from the first start to the last (CPU "
                "seconds per second of every process, by role, sampled from `/proc` every "
                f"0.25 s: `bench/cpu_share.py`; {starts[0].bare_concurrency} at a time for "
                "the bare client). Temporal's server answers a start as fast as the CPU "
                "it gets: compare its share in the two paths.",
                "",
                table(["run", "path", *CORE_ROLES, "total"], cores),
            ]
    rss = [r.peak_rss_mib for r in ours] + [s.ours_peak_rss_mib for s in starts]
    rss += [r.drains["ours"].peak_rss_mib for r in rounds if "ours" in r.drains]
    verdicts += drain_verdicts(rounds) if rounds else []
    verdicts += start_verdicts(starts, [v for v in rss if v is not None])
    workflows: list[workflow_report.Result] = data.get("workflow", [])  # type: ignore[assignment]
    if workflows:
        temporal = machine.get("temporal_persistence", "?")
        cpus = int(machine["nproc"]) if str(machine.get("nproc", "")).isdigit() else None
        parts += ["", *workflow_report.section(workflows, temporal, cpus)]
        verdicts += workflow_report.verdicts(workflows)
    if verdicts:
        parts += ["", "### Goals (worst of the runs)", "", verdict_table(verdicts)]
    parts += ["", "### Machine", "", machine_table(machine)]
    return "\n".join(parts)


def charts(results: list[PathResult]) -> list[Path]:
    """The CDFs and the starts per second, from each path's first run."""
    first = {r.path: r for r in sorted(results, key=lambda r: -r.run)}
    if not first:
        return []
    out = [
        plots.latency_cdf(
            {
                PATH_LABELS[p]: r.samples.get("commit_to_workflow_start", [])
                for p, r in first.items()
            },
            "commit → Temporal workflow start, per path (run 1)",
            IMG / "bench-latency-cdf.png",
        ),
        plots.per_second_lines(
            {PATH_LABELS[p]: r.starts_per_second for p, r in first.items()},
            "workflow starts per second under the steady load (run 1)",
            "starts/s",
            IMG / "bench-throughput-steady.png",
        ),
    ]
    ours = first.get("ours")
    if ours is not None:
        out.append(
            plots.latency_cdf(
                {METRIC_LABELS[m]: v for m, v in ours.samples.items() if m in METRIC_LABELS},
                "`pipeline run`: commit → each stage (run 1)",
                IMG / "bench-latency-stages.png",
            )
        )
    return out
