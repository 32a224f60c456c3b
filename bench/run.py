"""``make bench``: end-to-end latency and throughput, against the designs this replaces.

    .venv/bin/python -m bench.run --no-profile             # short mode, 3 runs
    .venv/bin/python -m bench.run --no-profile --runs 1    # one run: quick iterations
    .venv/bin/python -m bench.run --no-profile --full      # issue 17's loads, Temporal on PostgreSQL
    make bench                                             # the short mode, without py-spy
    make bench BENCH_ARGS="--full --no-profile"

py-spy sampling the measured process inflates its latencies (a 119 ms p50 became 1.2 s),
so take latency figures with ``--no-profile`` and read profiles from a separate run.

Starts the local services if needed (never stops them); with ``--temporal postgres`` (the
default of ``--full``) also Temporal's own server on the dev PostgreSQL
(:mod:`bench.temporal_postgres`), stopped at the end. Each measured path runs ``--runs``
times (3 by default), interleaved: run 1 of every path, then run 2 of every path, ...;
every run is reported with the 1-minute load average before and after it, and each goal
is judged on the worst run. The paths, each in a fresh database with its own slot, topics,
consumer group and task queue: the steady-load latency (``direct`` bare Temporal client,
``listen`` LISTEN/NOTIFY, ``poll`` polling every second, ``ours`` = ``pipeline run``) with
the stage table of ``ours``; the drain of a bootstrap backlog into workflow starts against
the bare client; the drain of a mixed event backlog by the reader alone, a bare Faust
agent and ``pipeline run`` (:mod:`bench.drain`); the real workflow and worker
(:mod:`bench.workflow_bench`: ``pipeline run`` + ``pipeline worker``, initiated ->
``workflow.queue.completed`` at a steady 5 bootstraps/s, then completed/s on a backlog;
``--skip-workflow`` leaves it out, ``--drain-only`` measures the event drain alone,
``--starts-only`` the start drain alone).
Writes JSON to bench/results/, charts to docs/img/ and its own section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import subprocess
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from temporalio.client import Client

from bench import drain, profiling, temporal_postgres, throughput, workflow_bench
from bench.drain_fill import DEFAULT_BOOTSTRAP_EVERY
from bench.e2e_body import DOC, build_body, charts
from bench.harness import RESULTS, Services, ensure_services
from bench.latency import PATHS, LoadSpec, Options, PathResult, run_path
from bench.machine import describe
from bench.report import write
from bench.runs import LoadAround, interleave, load1
from bench.starts import server_version
from bench.workflow_report import Result
from pipeline import eventloop

log = logging.getLogger("bench")

SHORT_PATHS = ("direct", "listen", "ours")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    p.add_argument(
        "--full",
        action="store_true",
        help="100+1,000 events/s for 60 s, 100,000-event drain, Temporal on PostgreSQL",
    )
    p.add_argument("--runs", type=int, default=3, help="runs of each path, interleaved (3)")
    p.add_argument("--seconds", type=float, help="load duration (short 10, full 60)")
    p.add_argument("--bootstrap-rate", type=float, help="initiated events/s (short 20, full 100)")
    p.add_argument("--other-rate", type=float, help="other events/s (short 200, full 1,000)")
    p.add_argument("--events", type=int, help="mixed event backlog (short 10,000, full 100,000)")
    p.add_argument(
        "--bootstrap-every",
        type=int,
        default=DEFAULT_BOOTSTRAP_EVERY,
        help="one bootstrap in this many backlog events",
    )
    p.add_argument("--bootstraps", type=int, help="bootstrap backlog (short 100, full 200)")
    p.add_argument("--settle", type=float, help="seconds to wait for starts after the load")
    p.add_argument(
        "--warmup",
        type=float,
        default=20.0,
        help="seconds of the steady load through `pipeline run` before the measured runs, "
        "not counted (a cold broker's JIT doubles the first run's latency); 0: none",
    )
    p.add_argument("--paths", help="latency paths (short direct,listen,ours; full all four)")
    p.add_argument(
        "--temporal",
        choices=("dev", "postgres"),
        help="the dev server (short) or Temporal's server on PostgreSQL (full)",
    )
    p.add_argument(
        "--skip-throughput", action="store_true", help="neither the start drain nor the event drain"
    )
    p.add_argument("--skip-workflow", action="store_true", help="not the real workflow phase")
    p.add_argument("--drain-only", action="store_true", help="only the event drain")
    p.add_argument("--starts-only", action="store_true", help="only the start drain")
    p.add_argument(
        "--workflow-rate", type=float, default=5.0, help="real workflow: steady bootstraps/s (5)"
    )
    p.add_argument(
        "--workflow-seconds", type=float, help="real workflow: steady seconds (short 20, full 60)"
    )
    p.add_argument(
        "--workflow-backlog",
        type=int,
        help="real workflow: saturation backlog (short 150, full 500)",
    )
    p.add_argument(
        "--workflow-limit",
        type=float,
        help="real workflow: seconds to wait for each phase's completions (short 90, full 300)",
    )
    p.add_argument("--no-profile", action="store_true", help="do not sample with py-spy")
    p.add_argument("--real-worker", action="store_true", help="`pipeline worker`, not the stand-in")
    p.add_argument("--no-doc", action="store_true", help="leave docs/ alone")
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error("--runs must be at least 1")
    # The short mode scales the load down five-fold: on a 2-CPU machine the Temporal dev
    # server (SQLite) alone cannot start 100 workflows/s, which the full mode shows.
    args.bootstrap_rate = args.bootstrap_rate or (100.0 if args.full else 20.0)
    args.other_rate = args.other_rate or (1000.0 if args.full else 200.0)
    args.seconds = args.seconds or (60.0 if args.full else 10.0)
    args.events = args.events or (100_000 if args.full else 10_000)
    args.bootstraps = args.bootstraps or (200 if args.full else 100)
    args.settle = args.settle or (120.0 if args.full else 30.0)
    args.temporal = args.temporal or ("postgres" if args.full else "dev")
    args.workflow_seconds = args.workflow_seconds or (60.0 if args.full else 20.0)
    args.workflow_backlog = args.workflow_backlog or (500 if args.full else 150)
    args.workflow_limit = args.workflow_limit or (300.0 if args.full else 90.0)
    args.workflow = not (args.skip_workflow or args.drain_only or args.starts_only)
    if args.paths is None:
        args.paths = ",".join(PATHS if args.full else SHORT_PATHS)
    if args.drain_only or args.starts_only:
        args.paths = ""
    unknown = [p for p in args.paths.split(",") if p and p not in PATHS]
    if unknown:
        p.error(f"unknown path(s) {', '.join(unknown)}: choose from {', '.join(PATHS)}")
    return args


def phases(args: argparse.Namespace) -> list[str]:
    """What each run measures, in order: the latency paths, the start drain, the event
    drain, the real workflow (``--drain-only``, ``--starts-only``: that drain alone)."""
    paths = [p for p in args.paths.split(",") if p]
    if not args.skip_throughput:
        if not args.drain_only:
            paths.append("starts")
        if not args.starts_only:
            paths.append("drain")
    if args.workflow:
        paths.append("workflow")
    return paths


async def _start_drain(
    svc: Services, args: argparse.Namespace, opts: Options, run: int
) -> throughput.StartDrain:
    starts = throughput.StartDrain(bootstraps=args.bootstraps, run=run)
    before = load1()
    await throughput.bare_client(svc, args.bootstraps, opts, starts)
    await throughput.bootstrap_drain(svc, args.bootstraps, opts, starts)
    starts.load = LoadAround(before, load1())
    return starts


async def _warm_up(svc: Services, spec: LoadSpec, seconds: float, opts: Options) -> str:
    """The steady load through ``pipeline run`` for ``seconds``, results dropped.

    Measured here: on a freshly started dev stack the same latency run gave commit ->
    start p50 137, 84, 49 and 29 ms in four back-to-back runs, the broker's JVM compiling
    its hot paths (docs/benchmarks.md). A production broker is warm; the runs that count
    should see one too.
    """
    t = time.monotonic()
    before = load1()
    log.info("warm-up: %.0f s of the steady load through pipeline run, not counted", seconds)
    warm = LoadSpec(spec.bootstrap_rate, spec.other_rate, seconds)
    await run_path(svc, "ours", warm, opts, run=0)
    return (
        f"{seconds:.0f} s of the steady load through `pipeline run` before run 1, not counted "
        f"({time.monotonic() - t:.0f} s with its settling; load {before:.2f} -> {load1():.2f})"
    )


async def measure(svc: Services, args: argparse.Namespace, opts: Options) -> dict[str, object]:
    client = await Client.connect(svc.temporal)
    machine = describe(svc.admin_dsn, await server_version(client))
    machine["temporal_persistence"] = (
        "PostgreSQL (Temporal's own server, bench/temporal_postgres.py)"
        if args.temporal == "postgres"
        else "SQLite (the CLI's dev server)"
    )
    spec = LoadSpec(args.bootstrap_rate, args.other_rate, args.seconds)
    paths = phases(args)
    wf_spec = workflow_bench.Spec(
        args.workflow_backlog, args.workflow_rate, args.workflow_seconds, args.workflow_limit
    )
    results: list[PathResult] = []
    workflows: list[Result] = []
    start_drains: list[throughput.StartDrain] = []
    rounds: list[drain.Round] = []
    if args.warmup > 0 and paths:
        machine["warm_up"] = await _warm_up(svc, spec, args.warmup, opts)
    for run, path in interleave(paths, args.runs):
        t = time.monotonic()
        log.info("run %d path=%s load=%.2f", run, path, load1())
        if path == "starts":
            start_drains.append(await _start_drain(svc, args, opts, run))
        elif path == "workflow":
            workflows.append(await workflow_bench.run(svc, wf_spec, run, opts.log_dir))
        elif path == "drain":
            rounds.append(
                await drain.one_round(
                    svc, run, args.events, args.bootstrap_every, opts, drain.KINDS
                )
            )
        else:
            results.append(await run_path(svc, path, spec, opts, run))
        log.info("run %d path=%s done in %.0fs", run, path, time.monotonic() - t)
    return {
        "machine": machine,
        "latency_results": results,
        "starts": start_drains,
        "drain_rounds": rounds,
        "workflow": workflows,
    }


def _profiles(data: dict[str, object]) -> dict[str, dict[str, list[tuple[str, float]]]]:
    out = {}
    results: list[PathResult] = data["latency_results"]  # type: ignore[assignment]
    for r in results:
        if r.profile_file and (file := Path(r.profile_file)).exists():
            out[f"steady load ({r.path}, run {r.run})"] = profiling.summarize(file.read_text())
    return out


def _temporal_up() -> str:
    """``python -m bench.temporal_postgres up`` in a child (its client runtime can abort
    the interpreter at exit); the frontend address it prints."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.temporal_postgres", "up"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"Temporal on PostgreSQL did not start:\n{done.stderr[-2000:]}")
    return done.stdout.strip().splitlines()[-1]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("pipeline.migrate").setLevel(logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    started = time.monotonic()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    svc = ensure_services()
    opts = Options(
        log_dir=RESULTS / "logs" / stamp,
        profile_dir=None if args.no_profile else RESULTS / "profiles" / stamp,
        real_worker=args.real_worker,
        settle_seconds=args.settle,
    )
    try:
        if args.temporal == "postgres":
            svc = Services(svc.layout, _temporal_up())
            log.info("Temporal on PostgreSQL at %s", svc.temporal)
        data = eventloop.run(measure(svc, args, opts))
    finally:
        if args.temporal == "postgres":
            temporal_postgres.down(svc.layout)
    data["date"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    data["command"] = "python -m bench.run " + shlex.join(sys.argv[1:] if argv is None else argv)
    data["profiles"] = _profiles(data)
    results: list[PathResult] = data["latency_results"]  # type: ignore[assignment]
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"e2e-{stamp}.json"
    payload = {
        "benchmark": "end_to_end",
        "date": data["date"],
        "command": data["command"],
        "args": vars(args),
        "machine": data["machine"],
        "paths": [asdict(r) for r in results],
        "starts": [asdict(s) for s in data["starts"]],  # type: ignore[attr-defined]
        "drain_rounds": [asdict(r) for r in data["drain_rounds"]],  # type: ignore[attr-defined]
        "workflow": [asdict(r) for r in data["workflow"]],  # type: ignore[attr-defined]
        "profiles": data["profiles"],
        "wall_seconds": time.monotonic() - started,
    }
    out.write_text(json.dumps(payload, indent=1, default=str, allow_nan=True))
    images = [] if args.no_doc else charts(results)
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
