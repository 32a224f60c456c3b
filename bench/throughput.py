"""Throughput of workflow starts: a backlog of bootstraps drained by ``pipeline run``
started after it exists.

N ``organization.bootstrap.initiated`` drained into workflow starts, against a bare
Temporal client starting N workflows in the same run. (The event drain, against the
reader alone and a bare Faust agent, is :mod:`bench.drain`.)

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
from temporalio.client import Client

from bench import starts, topics
from bench.cpu_share import Sampler
from bench.harness import (
    Names,
    Services,
    check_alive,
    fresh_database,
    peak_rss_mib,
    pipeline_argv,
    start_process,
    stop_process,
)
from bench.latency import Options, worker_argv
from bench.load import bootstrap_backlog
from bench.runs import LoadAround
from bench.stats import span_rate

log = logging.getLogger(__name__)


def _pipeline_env(svc: Services, names: Names) -> dict[str, str]:
    return svc.env(names, PIPELINE_INITIAL_SNAPSHOT="false")


def _create_slot(dsn: str, slot: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))


@dataclass(slots=True)
class StartDrain:
    """(b): workflow starts per second, ours against the bare client."""

    bootstraps: int
    run: int = 1
    load: LoadAround | None = None  # 1-minute load average before -> after (both drains)
    ours_rate: float = 0.0
    ours_seconds_from_process_start: float = 0.0
    ours_started: int = 0
    ours_peak_rss_mib: float | None = None
    bare_sequential_rate: float = 0.0
    bare_concurrent_rate: float = 0.0
    # pipeline.agents.dispatch.DEFAULT_MAX_IN_FLIGHT: the starts `pipeline run` keeps in
    # flight; issue 17 compares at the same concurrency.
    bare_concurrency: int = 64
    # Cores each role used from the first start to the last (bench.cpu_share): Temporal's
    # server answers only as fast as the CPU it gets on a machine the pipeline shares.
    ours_cores: dict[str, float] = field(default_factory=dict)
    bare_cores: dict[str, float] = field(default_factory=dict)


async def _bare(client: Client, task_queue: str, n: int, concurrency: int) -> list[float]:
    """Start times (POSIX s, Temporal's) of n workflows started ``concurrency`` at a time."""
    orgs = [str(uuid.uuid4()) for _ in range(n)]
    limit = asyncio.Semaphore(concurrency)

    async def one(org: str) -> None:
        async with limit:
            await starts.start_bootstrap(client, task_queue, org, {"org_id": org})

    await asyncio.gather(*(one(o) for o in orgs))
    times = await starts.start_times(client, task_queue, n)
    wanted = {f"org-bootstrap-{o}" for o in orgs}
    return [t for wid, t in times.items() if wid in wanted]


async def bare_client(svc: Services, n: int, opts: Options, result: StartDrain) -> None:
    """The floor: N starts from one client, one at a time and ``bare_concurrency`` at a time."""
    client = await Client.connect(svc.temporal)
    for concurrency in (1, result.bare_concurrency):
        names = Names.fresh(f"thr_bare{concurrency}")
        worker = start_process(
            "worker", worker_argv(opts), svc.env(names), opts.log_dir / names.run_id
        )
        try:
            with Sampler() as cpu:
                times = await _bare(client, names.task_queue, n, concurrency)
        finally:
            stop_process(worker)
        if concurrency == 1:
            result.bare_sequential_rate = span_rate(times)
        else:
            result.bare_concurrent_rate = span_rate(times)
            if times:
                result.bare_cores = cpu.cores(min(times), max(times))


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
            with Sampler() as cpu, psycopg.connect(dsn, autocommit=True) as conn:
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
                result.ours_cores = cpu.cores(min(times.values()), max(times.values()))
            result.ours_peak_rss_mib = peak_rss_mib(run.pid)
        finally:
            for proc in procs:
                stop_process(proc)
            await topics.delete_topics(svc.kafka, f"bench-{names.run_id}")
