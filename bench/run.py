"""``make bench``: end-to-end latency and throughput, against the designs this replaces.

    .venv/bin/python -m bench.run            # short mode, under 5 minutes
    .venv/bin/python -m bench.run --full     # 60 s of load, bigger backlogs
    make bench                               # the short mode, without py-spy
    make bench BENCH_ARGS="--full --real-worker --no-profile"
    make bench BENCH_ARGS=                   # profiles `pipeline run` with py-spy meanwhile

py-spy sampling the measured process inflates its latencies (a 119 ms p50 became 1.2 s),
so take latency figures with ``--no-profile`` and read profiles from a separate run.

Starts the local services if needed (never stops them), then, each in a fresh database
with its own slot, topics, consumer group and task queue: the steady-load latency of four
paths (``direct`` bare Temporal client, ``listen`` LISTEN/NOTIFY, ``poll`` polling every
second, ``ours`` = ``pipeline run``), the end-to-end drain of an event backlog, and the
drain of a bootstrap backlog into workflow starts against the bare client. Writes JSON
to bench/results/, charts to docs/img/ and its own section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import shlex
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from temporalio.client import Client

from bench import plots, profiling, throughput
from bench.harness import REPO, RESULTS, Services, ensure_services
from bench.latency import PATHS, LoadSpec, Options, PathResult, run_path
from bench.machine import describe
from bench.report import fmt_ms, goal_mark, machine_table, table, write
from bench.starts import server_version
from bench.stats import Summary, ratio, summarize_censored

log = logging.getLogger("bench")

IMG = REPO / "docs" / "img"
DOC = REPO / "docs" / "benchmarks.md"

GOAL_P50_MS = 20.0
GOAL_P99_MS = 75.0
GOAL_DRAIN_EPS = 10_000.0
GOAL_START_RATIO = 0.9
GOAL_RSS_MIB = 300.0

METRIC_LABELS = {
    "commit_to_kafka": "commit → Kafka append (all events)",
    "commit_to_pending_event": "commit → `workflow.queue.pending` committed",
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


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    p.add_argument(
        "--full", action="store_true", help="100+1,000 events/s for 60 s; 300k/2,000 backlogs"
    )
    p.add_argument("--seconds", type=float, help="load duration (short 20, full 60)")
    p.add_argument("--bootstrap-rate", type=float, help="initiated events/s (short 20, full 100)")
    p.add_argument("--other-rate", type=float, help="other events/s (short 200, full 1,000)")
    p.add_argument("--events", type=int, help="event backlog (short 50,000, full 300,000)")
    p.add_argument("--bootstraps", type=int, help="bootstrap backlog (short 300, full 2,000)")
    p.add_argument("--settle", type=float, help="seconds to wait for starts after the load")
    p.add_argument("--paths", default=",".join(PATHS), help="latency paths to run")
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--no-profile", action="store_true", help="do not sample with py-spy")
    p.add_argument("--real-worker", action="store_true", help="`pipeline worker`, not the stand-in")
    p.add_argument("--no-doc", action="store_true", help="leave docs/ alone")
    args = p.parse_args(argv)
    # The short mode scales the load down five-fold: on a 2-CPU machine the Temporal dev
    # server (SQLite) alone cannot start 100 workflows/s, which the full mode shows.
    args.bootstrap_rate = args.bootstrap_rate or (100.0 if args.full else 20.0)
    args.other_rate = args.other_rate or (1000.0 if args.full else 200.0)
    args.seconds = args.seconds or (60.0 if args.full else 20.0)
    args.events = args.events or (300_000 if args.full else 30_000)
    args.bootstraps = args.bootstraps or (2_000 if args.full else 200)
    args.settle = args.settle or (120.0 if args.full else 30.0)
    return args


def _summary(result: PathResult, metric: str) -> Summary | None:
    if metric not in result.samples:
        return None
    return summarize_censored(result.samples[metric], result.missing.get(metric, 0))


def _ms(value: float, settle: float) -> str:
    return f"> {settle:.0f} s (not started)" if math.isinf(value) else fmt_ms(value)


def latency_rows(results: list[PathResult], settle: float) -> list[list[str]]:
    rows = []
    for res in results:
        for metric, label in METRIC_LABELS.items():
            s = _summary(res, metric)
            if s is None:
                continue
            seen = s.n - res.missing.get(metric, 0)
            rows.append(
                [
                    PATH_LABELS[res.path],
                    label,
                    f"{seen:,} / {s.n:,}",
                    _ms(s.p50, settle),
                    _ms(s.p95, settle),
                    _ms(s.p99, settle),
                    _ms(s.max, settle),
                ]
            )
    return rows


def profile_text(summary: dict[str, list[tuple[str, float]]], top: int = 8) -> str:
    lines = [f"- {share:5.1%} self  `{frame}`" for frame, share in summary.get("self", [])[:top]]
    return "\n".join(lines) or "- (no samples)"


def build_body(data: dict[str, object], args: argparse.Namespace) -> str:
    results: list[PathResult] = data["latency_results"]  # type: ignore[assignment]
    ours = next((r for r in results if r.path == "ours"), None)
    drain: throughput.Drain | None = data.get("drain")  # type: ignore[assignment]
    starts: throughput.StartDrain | None = data.get("starts")  # type: ignore[assignment]
    machine: dict[str, str] = data["machine"]  # type: ignore[assignment]
    mode = "full" if args.full else "short"
    parts = [
        f"Measured {data['date']} with `{data['command']}` ({mode} mode"
        + (
            "; the short mode scales the full load (100 + 1,000 events/s for 60 s) down to "
            f"{args.bootstrap_rate:.0f} + {args.other_rate:.0f} events/s for {args.seconds:.0f} s "
            "and drains smaller backlogs"
            if not args.full
            else ""
        )
        + "). Raw samples: `bench/results/` (git-ignored).",
        "",
        "**How it is measured.** Every path runs in its own fresh database, under the same "
        f"open-loop load: {args.bootstrap_rate:.0f} `organization.bootstrap.initiated`/s (one "
        f"transaction each) plus {args.other_rate:.0f} other events/s (`invitation.email.sent`, "
        f"10 per transaction) for {args.seconds:.0f} s, and each starts the same workflow "
        "(`org-bootstrap-{org_id}`, same id policies) on its own task queue. "
        + (
            "The worker is `pipeline worker` with the local DNS/e-mail providers. "
            if args.real_worker
            else "The worker is a stand-in registered as `OrganizationBootstrapWorkflow` "
            "that returns at once (`bench/standin.py`): only the start is measured, and the "
            "real workflow's activities would add event-store writes competing for the same CPUs. "
        )
        + "Commit times are the database's: `track_commit_timestamp` is "
        f"`{machine.get('track_commit_timestamp')}` on the dev cluster (so no "
        "`pg_xact_commit_timestamp`), and the WAL commit record's timestamp is read instead "
        "(a `test_decoding` slot created before the load and read after it; the same value "
        "as the reader's `commit_ts` header). Start times are Temporal's (each execution's "
        "`start_time`), Kafka times the broker's (`LogAppendTime`). The projection time is the "
        "commit of the first write of the job's `workflow_queue_projection` row "
        "(the row's own `created_at`/`updated_at` hold the *event's* `created_at`, not when "
        "the projection wrote it). Percentiles count a workflow not started within "
        f"{args.settle:.0f} s after the load as infinitely late (lower bounds).",
        "",
        "### Latency at steady load",
        "",
        table(
            ["path", "interval", "seen / expected", "p50 ms", "p95 ms", "p99 ms", "max ms"],
            latency_rows(results, args.settle),
        ),
        "",
        table(
            ["path", "bootstraps/s achieved", "other events/s achieved", "generator max behind ms"],
            [
                [
                    PATH_LABELS[r.path],
                    f"{r.load.get('bootstrap_rate', 0):.1f}",
                    f"{r.load.get('other_rate', 0):.0f}",
                    fmt_ms(r.load.get("max_behind_ms")),
                ]
                for r in results
            ],
        ),
        "",
        "![commit → workflow start CDF](img/bench-latency-cdf.png)",
        "",
        "![pipeline stages CDF](img/bench-latency-stages.png)",
        "",
        "![workflow starts per second](img/bench-throughput-steady.png)",
        "",
        "The reference document measured ~359 ms from `initiated` to `workflow_started` through "
        "Supabase Realtime (one event, no load), and LISTEN/NOTIFY through a pooler received "
        "nothing at all; the LISTEN/NOTIFY row above uses a direct connection, the only way "
        "it works.",
    ]
    if drain is not None or starts is not None:
        parts += ["", "### Throughput", ""]
        rows: list[list[str]] = []
        if drain is not None:
            rows.append(
                [
                    f"(a) backlog of {drain.events:,} events drained end to end "
                    "(WAL → Kafka → agents → projection checkpoint)",
                    f"{drain.events_per_second:,.0f} events/s from process start "
                    f"({drain.seconds_from_process_start:.1f} s); "
                    f"{drain.events_per_second_after_startup:,.0f}/s from the first record in Kafka"
                    + ("" if drain.complete else " — **did not finish**"),
                    f">= {GOAL_DRAIN_EPS:,.0f}/s",
                    goal_mark(drain.events_per_second >= GOAL_DRAIN_EPS),
                ]
            )
        if starts is not None:
            r_seq = ratio(starts.ours_rate, starts.bare_sequential_rate)
            r_con = ratio(starts.ours_rate, starts.bare_concurrent_rate)
            rows.append(
                [
                    f"(b) backlog of {starts.bootstraps:,} bootstraps drained into workflow starts",
                    f"ours {starts.ours_rate:.1f} starts/s ({starts.ours_started:,} started); bare "
                    f"client {starts.bare_sequential_rate:.1f}/s one at a time, "
                    f"{starts.bare_concurrent_rate:.1f}/s {starts.bare_concurrency} at a time; "
                    f"ratio {r_seq or 0:.2f}x / {r_con or 0:.2f}x",
                    f">= {GOAL_START_RATIO}x",
                    goal_mark(r_seq is not None and r_seq >= GOAL_START_RATIO),
                ]
            )
        rss = [
            v
            for v in (
                drain.peak_rss_mib if drain else None,
                starts.ours_peak_rss_mib if starts else None,
                ours.peak_rss_mib if ours else None,
            )
            if v is not None
        ]
        if rss:
            rows.append(
                [
                    "(c) peak RSS of `pipeline run` (VmHWM)",
                    f"{max(rss):.0f} MiB (max over the runs above)",
                    f"<= {GOAL_RSS_MIB:.0f} MiB",
                    goal_mark(max(rss) <= GOAL_RSS_MIB),
                ]
            )
        parts.append(table(["measurement", "result", "goal", ""], rows))
        if drain is not None:
            parts += ["", "![backlog drain](img/bench-throughput-drain.png)"]
    if ours is not None:
        s = _summary(ours, "commit_to_workflow_start")
        parts += [
            "",
            "### Goals",
            "",
            table(
                ["goal", "measured", ""],
                [
                    [
                        f"commit → workflow started p50 <= {GOAL_P50_MS:.0f} ms",
                        _ms(s.p50, args.settle) if s else "-",
                        goal_mark(s.p50 <= GOAL_P50_MS if s else None),
                    ],
                    [
                        f"commit → workflow started p99 <= {GOAL_P99_MS:.0f} ms",
                        _ms(s.p99, args.settle) if s else "-",
                        goal_mark(s.p99 <= GOAL_P99_MS if s else None),
                    ],
                ],
            ),
        ]
    profiles: dict[str, dict[str, list[tuple[str, float]]]] = data.get("profiles", {})  # type: ignore[assignment]
    if profiles:
        parts += ["", "### Where the time goes (py-spy on `pipeline run`)", ""]
        for name, summary in profiles.items():
            parts += [f"{name}:", "", profile_text(summary), ""]
    parts += ["", "### Machine", "", machine_table(machine)]
    return "\n".join(parts)


def charts(results: list[PathResult], drain: throughput.Drain | None) -> list[Path]:
    out = [
        plots.latency_cdf(
            {PATH_LABELS[r.path]: r.samples.get("commit_to_workflow_start", []) for r in results},
            "commit → Temporal workflow start, per path",
            IMG / "bench-latency-cdf.png",
        ),
        plots.per_second_lines(
            {PATH_LABELS[r.path]: r.starts_per_second for r in results},
            "workflow starts per second under the steady load",
            "starts/s",
            IMG / "bench-throughput-steady.png",
        ),
    ]
    ours = next((r for r in results if r.path == "ours"), None)
    if ours is not None:
        out.append(
            plots.latency_cdf(
                {METRIC_LABELS[m]: v for m, v in ours.samples.items() if m in METRIC_LABELS},
                "`pipeline run`: commit → each stage",
                IMG / "bench-latency-stages.png",
            )
        )
    if drain is not None:
        out.append(
            plots.drain_progress(drain.progress, drain.events, IMG / "bench-throughput-drain.png")
        )
    return out


async def measure(svc: Services, args: argparse.Namespace, opts: Options) -> dict[str, object]:
    client = await Client.connect(svc.temporal)
    data: dict[str, object] = {"machine": describe(svc.admin_dsn, await server_version(client))}
    spec = LoadSpec(args.bootstrap_rate, args.other_rate, args.seconds)
    results: list[PathResult] = []
    for path in [p for p in args.paths.split(",") if p]:
        t = time.monotonic()
        results.append(await run_path(svc, path, spec, opts))
        log.info("path=%s done in %.0fs", path, time.monotonic() - t)
    data["latency_results"] = results
    if not args.skip_throughput:
        t = time.monotonic()
        starts = throughput.StartDrain(bootstraps=args.bootstraps)
        await throughput.bare_client(svc, args.bootstraps, opts, starts)
        await throughput.bootstrap_drain(svc, args.bootstraps, opts, starts)
        data["starts"] = starts
        log.info("bootstrap drain done in %.0fs", time.monotonic() - t)
        t = time.monotonic()
        limit_s = max(120.0, args.events / 500)
        data["drain"] = await throughput.event_drain(svc, args.events, opts, limit_s)
        log.info("event drain done in %.0fs", time.monotonic() - t)
    return data


def _profiles(data: dict[str, object]) -> dict[str, dict[str, list[tuple[str, float]]]]:
    out = {}
    results: list[PathResult] = data["latency_results"]  # type: ignore[assignment]
    named = [(f"steady load ({r.path})", r.profile_file) for r in results]
    drain = data.get("drain")
    if isinstance(drain, throughput.Drain):
        named.append(("event backlog drain", drain.profile_file))
    for name, file in named:
        if file and Path(file).exists():
            out[name] = profiling.summarize(Path(file).read_text())
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("pipeline.migrate").setLevel(logging.WARNING)
    started = time.monotonic()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    svc = ensure_services()
    opts = Options(
        log_dir=RESULTS / "logs" / stamp,
        profile_dir=None if args.no_profile else RESULTS / "profiles" / stamp,
        real_worker=args.real_worker,
        settle_seconds=args.settle,
    )
    data = asyncio.run(measure(svc, args, opts))
    data["date"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    data["command"] = "python -m bench.run " + shlex.join(sys.argv[1:] if argv is None else argv)
    data["profiles"] = _profiles(data)
    results: list[PathResult] = data["latency_results"]  # type: ignore[assignment]
    summaries = {
        r.path: {m: (s.as_dict() if (s := _summary(r, m)) else None) for m in r.samples}
        for r in results
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"e2e-{stamp}.json"
    drain = data.get("drain")
    start_drain = data.get("starts")
    payload = {
        "benchmark": "end_to_end",
        "date": data["date"],
        "command": data["command"],
        "args": vars(args),
        "machine": data["machine"],
        "summaries": summaries,
        "paths": [asdict(r) for r in results],
        "starts": asdict(start_drain) if isinstance(start_drain, throughput.StartDrain) else None,
        "drain": asdict(drain) if isinstance(drain, throughput.Drain) else None,
        "profiles": data["profiles"],
        "wall_seconds": time.monotonic() - started,
    }
    out.write_text(json.dumps(payload, indent=1, default=str, allow_nan=True))
    images = charts(results, drain if isinstance(drain, throughput.Drain) else None)
    body = build_body(data, args)
    (RESULTS / f"e2e-{stamp}.md").write_text(body + "\n")
    if not args.no_doc:
        write(DOC, body)
    print(body)
    print(f"\nresults: {out}\ncharts: {', '.join(str(i) for i in images)}")
    print(f"wall time: {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
