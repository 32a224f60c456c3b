"""The real bootstrap workflow and worker: completed per second at saturation, and latency.

``pipeline run`` and ``pipeline worker`` run as processes on a fresh database, topic and
task queue (bench/harness.py). Two figures (issue 17):

- **saturation**: a backlog of ``--backlog`` ``organization.bootstrap.initiated`` events,
  emitted with plain SQL (one transaction each) as fast as one connection can; the rate of
  ``workflow.queue.completed`` commits between the first and the last completion, and the
  whole backlog from the first initiated commit to the last completion;
- **latency**: a steady ``--rate`` bootstraps/s for ``--seconds``; initiated commit ->
  ``workflow.queue.completed`` commit, p50/p95/p99.

Every time is PostgreSQL's commit timestamp of the event's transaction
(``track_commit_timestamp``). Where the time of one bootstrap goes: the p50 gap between
consecutive events of the chain (commit timestamps), and from Temporal's own history of a
sample of the steady phase's workflows the p50 time of each history event since the
execution started (activities scheduled/started/completed, workflow tasks, markers).
CPU per bootstrap: each process's CPU time over the phase divided by its bootstraps (the
worker, ``pipeline run``, and this checkout's Temporal, Kafka and PostgreSQL with its
backends); the services' idle work over the phase is included, so a slower phase shows
them dearer.

``make bench`` (``python -m bench.run``) runs it as its workflow phase, every run
interleaved with the other paths, and writes the figures into docs/benchmarks.md
(:mod:`bench.workflow_report`); by hand, one run, figures printed and kept as JSON::

    .venv/bin/python -m bench.workflow_bench [--backlog 300] [--rate 5] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import subprocess
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from bench import temporal_postgres, topics
from bench.harness import (
    RESULTS,
    Names,
    Services,
    check_alive,
    cpu_seconds,
    ensure_services,
    fresh_database,
    pipeline_argv,
    start_process,
    stop_process,
    wait_for_slot_active,
)
from bench.load import Bootstrap, bootstrap_event, emit_bootstrap
from bench.report import verdict_table
from bench.stats import percentile, summarize_censored
from bench.workflow_report import Result, section, verdicts
from pipeline import eventloop
from pipeline import events as ev
from pipeline.dev.postgres import Postgres
from pipeline.eventstore import emit_sync

log = logging.getLogger(__name__)

CHAIN = (
    ev.BOOTSTRAP_INITIATED,
    ev.QUEUE_PENDING,
    ev.QUEUE_CLAIMED,
    ev.BOOTSTRAP_WORKFLOW_STARTED,
    ev.ORGANIZATION_CREATED,
    ev.DNS_RECORD_CREATED,
    ev.USER_INVITED,
    ev.INVITATION_EMAIL_SENT,
    ev.BOOTSTRAP_COMPLETED,
    ev.QUEUE_COMPLETED,
)
SPANS = (
    ("to the workflow", ev.BOOTSTRAP_INITIATED, ev.BOOTSTRAP_WORKFLOW_STARTED),
    ("the workflow", ev.BOOTSTRAP_WORKFLOW_STARTED, ev.QUEUE_COMPLETED),
)
HISTORY_SAMPLE = 20
WARMUP = 3


def _commit_times(dsn: str, event_types: Sequence[str]) -> dict[str, dict[str, float]]:
    """event type -> stream id -> commit time (POSIX s) of the stream's first such event."""
    out: dict[str, dict[str, float]] = {t: {} for t in event_types}
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT event_type, stream_id::text, "
            "extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8 "
            "FROM domain_events WHERE event_type = ANY(%s) ORDER BY stream_id, stream_version",
            (list(event_types),),
        ).fetchall()
    for event_type, stream, committed in rows:
        if committed is not None:
            out[event_type].setdefault(stream, float(committed))
    return out


def chain_gaps(
    times: Mapping[str, Mapping[str, float]], streams: Sequence[str]
) -> dict[str, float]:
    """p50 (ms) of each chain event's commit minus the previous chain event's commit, then
    of the two halves: before the workflow runs, and the workflow (:data:`SPANS`)."""
    gaps: dict[str, float] = {}
    pairs = [(b, a, f"{b} -> {a}") for b, a in itertools.pairwise(CHAIN)]
    pairs += [(b, a, f"{label}: {b} -> {a}") for label, b, a in SPANS]
    for before, after, label in pairs:
        values = sorted(
            (times[after][s] - times[before][s]) * 1000.0
            for s in streams
            if s in times.get(after, {}) and s in times.get(before, {})
        )
        if values:
            gaps[label] = percentile(values, 50)
    return gaps


def _label(event: object) -> str:
    name = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")  # type: ignore[attr-defined]
    for attr in ("activity_task_scheduled_event_attributes",):
        if event.HasField(attr):  # type: ignore[attr-defined]
            return f"{name} {getattr(event, attr).activity_type.name}"
    if event.HasField("marker_recorded_event_attributes"):  # type: ignore[attr-defined]
        return f"{name} {event.marker_recorded_event_attributes.marker_name}"  # type: ignore[attr-defined]
    return name


async def history_breakdown(client: Client, org_ids: Sequence[str]) -> list[tuple[str, float]]:
    """p50 ms since the execution started of each history event, for the commonest shape."""
    shapes: Counter[tuple[str, ...]] = Counter()
    offsets: dict[tuple[str, ...], list[list[float]]] = {}
    for org in org_ids:
        history = await client.get_workflow_handle(ev.workflow_id_for(org)).fetch_history()
        events = list(history.events)
        if not events:
            continue
        t0 = events[0].event_time.ToDatetime().timestamp()
        shape = tuple(_label(e) for e in events)
        shapes[shape] += 1
        offsets.setdefault(shape, []).append(
            [(e.event_time.ToDatetime().timestamp() - t0) * 1000.0 for e in events]
        )
    if not shapes:
        return []
    shape, _ = shapes.most_common(1)[0]
    rows = offsets[shape]
    return [(label, percentile(sorted(r[i] for r in rows), 50)) for i, label in enumerate(shape)]


async def _wait_completed(dsn: str, streams: Sequence[str], limit_s: float, procs: list) -> int:  # type: ignore[type-arg]
    wanted = list(streams)
    deadline = time.monotonic() + limit_s
    done = 0
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            check_alive(procs)
            cur = await conn.execute(
                "SELECT count(DISTINCT stream_id) FROM domain_events "
                "WHERE event_type = %s AND stream_id = ANY(%s::uuid[])",
                (ev.QUEUE_COMPLETED, wanted),
            )
            row = await cur.fetchone()
            done = int(row[0]) if row else 0
            if done >= len(wanted):
                break
            await asyncio.sleep(0.25)
    return done


async def _steady(dsn: str, rate: float, seconds: float) -> list[Bootstrap]:
    out: list[Bootstrap] = []
    loop = asyncio.get_running_loop()
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        t0 = loop.time()
        for k in range(int(rate * seconds)):
            delay = t0 + k / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            out.append(await emit_bootstrap(conn, "bench-wf"))
    return out


def _backlog(dsn: str, n: int) -> list[str]:
    """N initiated events, one transaction each, as fast as one connection commits them."""
    orgs: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        for _ in range(n):
            event = bootstrap_event("bench-wf-backlog")
            emit_sync(conn, event)
            orgs.append(str(event.stream_id))
    return orgs


def _tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` with its children, live or reaped (PostgreSQL's backends)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if entry.name == str(pid) or fields[1] == str(pid):
            total += sum(int(f) for f in fields[11:15])
    return total / ticks


def _service_pids(svc: Services) -> dict[str, int]:
    """The local services' main processes (this checkout's own, from their pid files);
    with ``--temporal postgres``, Temporal's own server instead of the dev server."""
    pids: dict[str, int] = {}
    files = {
        "kafka": svc.layout.run_dir / "kafka.pid",
        "postgres": Postgres(svc.layout).data_dir / "postmaster.pid",
    }
    if svc.temporal_address is None:
        files["temporal"] = svc.layout.run_dir / "temporal.pid"
    else:
        files["temporal (PostgreSQL)"] = temporal_postgres.Paths(svc.layout).pid_file
    for name, path in files.items():
        try:
            pids[name] = int(path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return pids


def _cpu(procs: Mapping[str, int]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, pid in procs.items():
        value = cpu_seconds(pid) if name in {"worker", "pipeline run"} else _tree_cpu(pid)
        if value is not None:
            out[name] = value
    return out


def _per_bootstrap(
    before: Mapping[str, float], after: Mapping[str, float], n: int
) -> dict[str, float]:
    return {k: (after[k] - before[k]) * 1000 / n for k in before if k in after and n}


@dataclass(frozen=True, slots=True)
class Spec:
    """One run's load: ``rate``/s for ``seconds``, then a ``backlog``; each wait for the
    completions gives up after ``limit_s`` (what did not complete is reported missing)."""

    backlog: int = 300
    rate: float = 5.0
    seconds: float = 30.0
    limit_s: float = 300.0
    worker_env: tuple[tuple[str, str], ...] = ()


async def run(svc: Services, spec: Spec, run_no: int = 1, log_dir: Path | None = None) -> Result:
    """Both phases with fresh processes, database, topic and task queue."""
    started = time.monotonic()
    extra = dict(spec.worker_env)
    result = Result(spec.backlog, spec.rate, spec.seconds, run=run_no, worker_env=extra)
    names = Names.fresh("wf")
    logs = (log_dir or RESULTS / "logs") / names.run_id
    with fresh_database(svc, names) as dsn:
        procs: list[subprocess.Popen[bytes]] = []
        try:
            await topics.create_topic(svc.kafka, names.topic, 8)
            env = svc.env(names)
            worker = start_process("worker", pipeline_argv("worker"), {**env, **extra}, logs)
            pipeline = start_process("pipeline-run", pipeline_argv("run"), env, logs)
            procs += [worker, pipeline]
            await asyncio.to_thread(wait_for_slot_active, dsn, names.slot, procs)
            client = await Client.connect(svc.temporal)
            async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                warm = [await emit_bootstrap(conn, "bench-wf-warmup") for _ in range(WARMUP)]
            await _wait_completed(dsn, [b.org_id for b in warm], 120, procs)

            result.load_before = list(os.getloadavg())
            watched = {"worker": worker.pid, "pipeline run": pipeline.pid, **_service_pids(svc)}
            cpu0 = _cpu(watched)
            steady = await _steady(dsn, spec.rate, spec.seconds)
            streams = [b.org_id for b in steady]
            await _wait_completed(dsn, streams, spec.limit_s, procs)
            cpu1 = _cpu(watched)
            result.load_after_latency = list(os.getloadavg())
            times = _commit_times(dsn, CHAIN)
            lat = [
                (times[ev.QUEUE_COMPLETED][s] - times[ev.BOOTSTRAP_INITIATED][s]) * 1000
                for s in streams
                if s in times[ev.QUEUE_COMPLETED]
            ]
            result.latency_samples_ms = sorted(lat)
            result.latency_missing = len(streams) - len(lat)
            summary = summarize_censored(lat, result.latency_missing)
            result.latency_ms = summary.as_dict() if summary else None
            result.chain_gaps_p50_ms = chain_gaps(times, streams)
            result.history_p50_ms = await history_breakdown(client, streams[:HISTORY_SAMPLE])

            backlog = await asyncio.to_thread(_backlog, dsn, spec.backlog)
            done = await _wait_completed(dsn, backlog, spec.limit_s, procs)
            cpu2 = _cpu(watched)
            result.load_after_saturation = list(os.getloadavg())
            times = _commit_times(dsn, [ev.BOOTSTRAP_INITIATED, ev.QUEUE_COMPLETED])
            completed = sorted(
                times[ev.QUEUE_COMPLETED][s] for s in backlog if s in times[ev.QUEUE_COMPLETED]
            )
            first = min(times[ev.BOOTSTRAP_INITIATED][s] for s in backlog)
            result.backlog_completed = done
            if len(completed) > 1:
                result.completed_per_second = (len(completed) - 1) / (completed[-1] - completed[0])
                result.backlog_seconds = completed[-1] - first
                result.backlog_per_second = len(completed) / result.backlog_seconds
            result.cpu_ms_per_bootstrap_steady = _per_bootstrap(cpu0, cpu1, len(streams))
            result.cpu_ms_per_bootstrap = _per_bootstrap(cpu1, cpu2, len(backlog))
        finally:
            for proc in procs:
                stop_process(proc)
            await topics.delete_topics(svc.kafka, f"bench-{names.run_id}")
    result.wall_seconds = time.monotonic() - started
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.workflow_bench", description=__doc__)
    parser.add_argument("--backlog", type=int, default=300)
    parser.add_argument("--rate", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument(
        "--limit", type=float, default=300.0, help="seconds to wait for each phase's completions"
    )
    parser.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an extra variable for `pipeline worker` (repeatable)",
    )
    parser.add_argument("--label", default="")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    spec = Spec(
        args.backlog,
        args.rate,
        args.seconds,
        args.limit,
        tuple(tuple(kv.split("=", 1)) for kv in args.worker_env),  # type: ignore[misc]
    )
    svc = ensure_services()
    result = eventloop.run(run(svc, spec))
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    out = RESULTS / f"workflow-{stamp}{'-' + args.label if args.label else ''}.json"
    out.write_text(json.dumps(asdict(result), indent=2) + "\n")
    print("\n".join(section([result], "the CLI's dev server", os.cpu_count())))
    print()
    print(verdict_table(verdicts([result])))
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    main()
