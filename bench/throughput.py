"""Throughput: backlogs drained by ``pipeline run`` started after they exist.

(a) events: N single-row transactions (1 in 10 ``workflow.queue.completed``, each a queue
    projection row; the rest ``invitation.email.sent``) drained until the projection
    agent's checkpoint (written in the same transaction as the projection rows) covers
    all N. (b) bootstraps: N ``organization.bootstrap.initiated`` drained into workflow
    starts, against a bare Temporal client starting N workflows in the same run.

The replication slot is created before the backlog (and the initial snapshot turned off),
so the backlog is read from the WAL, as it would be after an outage.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import time
import uuid
from dataclasses import dataclass, field

import psycopg
from aiokafka import AIOKafkaConsumer
from temporalio.client import Client

from bench import profiling, starts, topics
from bench.harness import (
    Names,
    Services,
    check_alive,
    cpu_seconds,
    fresh_database,
    peak_rss_mib,
    pipeline_argv,
    start_process,
    stop_process,
)
from bench.latency import Options, worker_argv
from bench.load import bootstrap_backlog, event_backlog
from bench.stats import rate, span_rate

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Drain:
    """One drain: how long, how fast, and the progress samples (t, done) for the plot."""

    events: int
    fill_seconds: float = 0.0
    seconds_from_process_start: float = 0.0
    seconds_from_first_output: float = 0.0
    events_per_second: float = 0.0
    events_per_second_after_startup: float = 0.0
    peak_rss_mib: float | None = None
    cpu_seconds: float | None = None
    progress: list[tuple[float, int, int]] = field(default_factory=list)  # t, kafka, done
    profile_file: str | None = None
    complete: bool = False


def _pipeline_env(svc: Services, names: Names) -> dict[str, str]:
    return svc.env(names, PIPELINE_INITIAL_SNAPSHOT="false")


def _create_slot(dsn: str, slot: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))


async def event_drain(svc: Services, n: int, opts: Options, limit_s: float) -> Drain:
    """(a): N events, WAL -> Kafka -> agents -> projection checkpoint."""
    names = Names.fresh("thr_events")
    result = Drain(events=n)
    spy: subprocess.Popen[bytes] | None = None
    with fresh_database(svc, names) as dsn:
        proc: subprocess.Popen[bytes] | None = None
        consumer = AIOKafkaConsumer(bootstrap_servers=svc.kafka)
        try:
            _create_slot(dsn, names.slot)
            await topics.create_topic(svc.kafka, names.topic, 8)
            t = time.monotonic()
            jobs = await asyncio.to_thread(event_backlog, dsn, n)
            result.fill_seconds = time.monotonic() - t
            log.info("backlog of %d events (%d queue jobs) in %.1fs", n, jobs, result.fill_seconds)
            await consumer.start()
            env = _pipeline_env(svc, names)
            logs = opts.log_dir / names.run_id
            t0 = time.monotonic()
            proc = start_process("pipeline-run", pipeline_argv("run"), env, logs)
            if opts.profile_dir is not None:
                out = opts.profile_dir / f"drain-{names.run_id}.raw"
                await asyncio.sleep(1.0)  # let the interpreter start before attaching
                spy = profiling.start(proc.pid, out)
                result.profile_file = str(out) if spy is not None else None
            first_output: float | None = None
            consumer_name = f"{names.group}.projection"
            with psycopg.connect(dsn, autocommit=True) as conn:
                while time.monotonic() - t0 < limit_s:
                    check_alive([proc])
                    row = conn.execute(
                        "SELECT coalesce(sum(kafka_offset), 0) FROM pipeline_checkpoints "
                        "WHERE consumer = %s AND topic = %s",
                        (consumer_name, names.topic),
                    ).fetchone()
                    done = int(row[0]) if row else 0
                    in_kafka = await topics.end_offsets_total(consumer, names.topic, 8)
                    now = time.monotonic()
                    result.progress.append((now - t0, in_kafka, done))
                    if first_output is None and in_kafka > 0:
                        first_output = now
                    if done >= n:
                        result.complete = True
                        break
                    await asyncio.sleep(0.5)
                rows = conn.execute("SELECT count(*) FROM workflow_queue_projection").fetchone()
            end = time.monotonic()
            profiling.stop(spy)
            result.seconds_from_process_start = end - t0
            result.seconds_from_first_output = end - (first_output or t0)
            result.events_per_second = rate(n, result.seconds_from_process_start)
            result.events_per_second_after_startup = rate(n, result.seconds_from_first_output)
            result.peak_rss_mib = peak_rss_mib(proc.pid)
            result.cpu_seconds = cpu_seconds(proc.pid)
            log.info(
                "drained %d events in %.1fs (%.0f/s), %s queue rows of %d",
                n,
                result.seconds_from_process_start,
                result.events_per_second,
                rows[0] if rows else "?",
                jobs,
            )
        finally:
            profiling.stop(spy)
            await consumer.stop()
            if proc is not None:
                stop_process(proc)
            await topics.delete_topics(svc.kafka, f"bench-{names.run_id}")
    return result


@dataclass(slots=True)
class StartDrain:
    """(b): workflow starts per second, ours against the bare client."""

    bootstraps: int
    ours_rate: float = 0.0
    ours_seconds_from_process_start: float = 0.0
    ours_started: int = 0
    ours_peak_rss_mib: float | None = None
    bare_sequential_rate: float = 0.0
    bare_concurrent_rate: float = 0.0
    bare_concurrency: int = 16


async def _bare(client: Client, task_queue: str, n: int, concurrency: int) -> float:
    orgs = [str(uuid.uuid4()) for _ in range(n)]
    limit = asyncio.Semaphore(concurrency)

    async def one(org: str) -> None:
        async with limit:
            await starts.start_bootstrap(client, task_queue, org, {"org_id": org})

    await asyncio.gather(*(one(o) for o in orgs))
    times = await starts.start_times(client, task_queue, n)
    wanted = {f"org-bootstrap-{o}" for o in orgs}
    return span_rate([t for wid, t in times.items() if wid in wanted])


async def bare_client(svc: Services, n: int, opts: Options, result: StartDrain) -> None:
    """The floor: N starts from one client, one at a time and ``bare_concurrency`` at a time."""
    client = await Client.connect(svc.temporal)
    for concurrency in (1, result.bare_concurrency):
        names = Names.fresh(f"thr_bare{concurrency}")
        worker = start_process(
            "worker", worker_argv(opts), svc.env(names), opts.log_dir / names.run_id
        )
        try:
            value = await _bare(client, names.task_queue, n, concurrency)
        finally:
            stop_process(worker)
        if concurrency == 1:
            result.bare_sequential_rate = value
        else:
            result.bare_concurrent_rate = value


async def bootstrap_drain(svc: Services, n: int, opts: Options, result: StartDrain) -> None:
    """(b) ours: N initiated events in the WAL, then ``pipeline run``; rate of starts."""
    names = Names.fresh("thr_starts")
    with fresh_database(svc, names) as dsn:
        procs: list[subprocess.Popen[bytes]] = []
        try:
            _create_slot(dsn, names.slot)
            await topics.create_topic(svc.kafka, names.topic, 8)
            await asyncio.to_thread(bootstrap_backlog, dsn, n)
            env = _pipeline_env(svc, names)
            logs = opts.log_dir / names.run_id
            procs.append(start_process("worker", worker_argv(opts), env, logs))
            t0 = time.time()
            run = start_process("pipeline-run", pipeline_argv("run"), env, logs)
            procs.append(run)
            client = await Client.connect(svc.temporal)
            deadline = time.monotonic() + max(120.0, n / 5)
            with psycopg.connect(dsn, autocommit=True) as conn:
                while time.monotonic() < deadline:
                    check_alive(procs)
                    row = conn.execute(
                        "SELECT count(*) FROM domain_events WHERE event_type = "
                        "'organization.bootstrap.workflow_started'"
                    ).fetchone()
                    if row is not None and row[0] >= n:
                        break
                    await asyncio.sleep(0.5)
            times = await starts.start_times(client, names.task_queue, n)
            result.ours_started = len(times)
            result.ours_rate = span_rate(list(times.values()))
            if times:
                result.ours_seconds_from_process_start = max(times.values()) - t0
            result.ours_peak_rss_mib = peak_rss_mib(run.pid)
        finally:
            for proc in procs:
                stop_process(proc)
            await topics.delete_topics(svc.kafka, f"bench-{names.run_id}")
