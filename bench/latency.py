"""Latency at steady load, one path at a time, each in its own fresh database.

Paths: ``ours`` (``pipeline run`` as a process), ``listen`` (LISTEN/NOTIFY trigger +
worker), ``poll`` (polling every second), ``direct`` (the load generator's own Temporal
client starts each workflow right after its commit: the floor). Every path starts the
same workflow type with the same call on its own task queue, served by the same worker.

Commit times are the database's (the WAL commit records, read through :mod:`bench.probe`);
workflow start times are Temporal's (each execution's ``start_time``); Kafka append times
are the broker's (``LogAppendTime``).
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.client import Client
from temporalio.service import RPCError

from bench import probe, profiling, starts, topics
from bench.baselines import install_notify
from bench.cpu_share import Sampler
from bench.harness import (
    Names,
    Services,
    check_alive,
    cpu_seconds,
    fresh_database,
    peak_rss_mib,
    pipeline_argv,
    python_argv,
    start_process,
    stop_process,
    wait_for_log,
    wait_for_slot_active,
)
from bench.load import AfterCommit, Bootstrap, emit_bootstrap, steady_load
from bench.runs import LoadAround, load1
from bench.stages import intervals
from bench.stats import latencies_ms, per_second
from pipeline import events as ev

log = logging.getLogger(__name__)

PATHS = ("direct", "listen", "poll", "ours")
WARMUP_BOOTSTRAPS = 3
DIRECT_CONCURRENCY = 16


@dataclass(frozen=True, slots=True)
class LoadSpec:
    bootstrap_rate: float
    other_rate: float
    seconds: float


@dataclass(slots=True)
class PathResult:
    """Samples (ms) per metric, and what the path did under the load."""

    path: str
    run: int = 1
    load: dict[str, float] = field(default_factory=dict)  # what the generator achieved
    load_average: LoadAround | None = None  # 1-minute load average before -> after
    samples: dict[str, list[float]] = field(default_factory=dict)
    missing: dict[str, int] = field(default_factory=dict)
    starts_per_second: list[int] = field(default_factory=list)
    kafka_per_second: list[int] = field(default_factory=list)
    peak_rss_mib: float | None = None
    cpu_seconds: float | None = None
    profile_file: str | None = None
    stages: dict[str, list[float]] = field(default_factory=dict)  # ours: bench.stages
    # During the load (its first commit to its last): cores by role (bench.cpu_share) and
    # the whole machine's (busy, stolen) cores: how much of the two cores the path left.
    cores: dict[str, float] = field(default_factory=dict)
    machine: tuple[float, float] | None = None


@dataclass(slots=True)
class Options:
    log_dir: Path
    profile_dir: Path | None = None
    real_worker: bool = False
    settle_seconds: float = 60.0


def worker_argv(opts: Options) -> list[str]:
    return pipeline_argv("worker") if opts.real_worker else python_argv("bench.standin")


async def _wait_started(client: Client, org_ids: list[str], wait_s: float = 90) -> None:
    deadline = time.monotonic() + wait_s
    for org in org_ids:
        while True:
            try:
                await client.get_workflow_handle(ev.workflow_id_for(org)).describe()
                break
            except RPCError:  # NOT_FOUND until it is started
                if time.monotonic() > deadline:
                    raise RuntimeError("warm-up workflows were not started in time") from None
                await asyncio.sleep(0.2)


async def _warm_up(dsn: str, client: Client, after_commit: AfterCommit | None) -> list[Bootstrap]:
    import psycopg

    done: list[Bootstrap] = []
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        for _ in range(WARMUP_BOOTSTRAPS):
            boot = await emit_bootstrap(conn, "bench-warmup")
            if after_commit is not None:
                await after_commit(boot)
            done.append(boot)
            await _wait_started(client, [boot.org_id])
    return done


def compute(
    result: PathResult,
    commits: probe.CommitLog,
    load: list[Bootstrap],
    started: dict[str, float],
    appended: list[topics.Appended],
    load_started: float,
) -> None:
    """Fill ``result`` with the latency samples of the load's bootstraps."""
    wanted = {b.event_id for b in load}
    initiated = {
        e.stream_id: e.committed
        for e in commits.events
        if e.event_type == ev.BOOTSTRAP_INITIATED and e.event_id in wanted
    }

    def first_by_stream(event_type: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for e in commits.events:
            if e.event_type == event_type and e.stream_id not in out:
                out[e.stream_id] = e.committed
        return out

    temporal = {
        org: started[ev.workflow_id_for(org)]
        for org in initiated
        if ev.workflow_id_for(org) in started
    }
    metrics: dict[str, dict[str, float]] = {"commit_to_workflow_start": temporal}
    if result.path in {"ours", "listen", "poll"}:
        metrics["commit_to_started_event"] = first_by_stream(ev.BOOTSTRAP_WORKFLOW_STARTED)
    if result.path == "ours":
        metrics["commit_to_pending_event"] = first_by_stream(ev.QUEUE_PENDING)
        metrics["commit_to_claimed_event"] = first_by_stream(ev.QUEUE_CLAIMED)
        job_of_stream = {e.stream_id: e.event_id for e in commits.events if e.event_id in wanted}
        metrics["commit_to_projection_row"] = {
            org: commits.job_first_write[job]
            for org, job in job_of_stream.items()
            if job in commits.job_first_write
        }
    for name, effects in metrics.items():
        samples, missing = latencies_ms(initiated, effects)
        result.samples[name] = samples
        result.missing[name] = missing
    if result.path == "ours":
        append_of = {a.event_id: a.appended for a in appended}
        initiated_ids = {
            e.stream_id: e.event_id
            for e in commits.events
            if e.event_type == ev.BOOTSTRAP_INITIATED and e.event_id in wanted
        }
        result.stages = intervals(
            {
                "committed": initiated,
                "kafka": {
                    org: append_of[eid] for org, eid in initiated_ids.items() if eid in append_of
                },
                "pending": metrics["commit_to_pending_event"],
                "claimed": metrics["commit_to_claimed_event"],
                "start": temporal,
                "started_event": metrics["commit_to_started_event"],
            }
        )
    if appended:
        in_load = [a for a in appended if a.committed >= load_started]
        result.samples["commit_to_kafka"] = [(a.appended - a.committed) * 1000 for a in in_load]
        result.missing["commit_to_kafka"] = 0
        result.kafka_per_second = per_second((a.appended for a in in_load), load_started)
    result.starts_per_second = per_second(temporal.values(), load_started)


async def run_path(
    svc: Services, path: str, spec: LoadSpec, opts: Options, run: int = 1
) -> PathResult:
    """One path under the steady load; returns its samples."""
    names = Names.fresh(f"lat_{path}")
    result = PathResult(path, run)
    before = load1()
    procs: list[subprocess.Popen[bytes]] = []
    spy: subprocess.Popen[bytes] | None = None
    log.info("latency path=%s db=%s task_queue=%s", path, names.database, names.task_queue)
    with fresh_database(svc, names) as dsn:
        try:
            if path == "listen":
                install_notify(dsn)
            probe.create_slot(dsn, names.probe_slot)
            env = svc.env(names)
            logs = opts.log_dir / names.run_id
            procs.append(start_process("worker", worker_argv(opts), env, logs))
            pipeline: subprocess.Popen[bytes] | None = None
            if path == "ours":
                await topics.create_topic(svc.kafka, names.topic, 8)
                pipeline = start_process("pipeline-run", pipeline_argv("run"), env, logs)
                procs.append(pipeline)
                await asyncio.to_thread(wait_for_slot_active, dsn, names.slot, procs)
            elif path in {"listen", "poll"}:
                procs.append(start_process(path, python_argv("bench.baselines", path), env, logs))
                ready = "listening" if path == "listen" else "polling"
                await asyncio.to_thread(wait_for_log, logs / f"{path}.log", ready, procs)
            client = await Client.connect(svc.temporal)

            limit = asyncio.Semaphore(DIRECT_CONCURRENCY)

            async def direct_start(boot: Bootstrap) -> None:
                # Bounded like the baseline workers; a failed start is a missing sample.
                async with limit:
                    try:
                        await starts.start_bootstrap(
                            client,
                            names.task_queue,
                            boot.org_id,
                            starts.bootstrap_input(boot.org_id, boot.event_id, boot.event_data),
                        )
                    except RPCError as exc:
                        log.warning("direct start org_id=%s failed: %s", boot.org_id, exc)

            after_commit = direct_start if path == "direct" else None
            warm = await _warm_up(dsn, client, after_commit)
            check_alive(procs)
            if pipeline is not None and opts.profile_dir is not None:
                out = opts.profile_dir / f"steady-{names.run_id}.raw"
                spy = profiling.start(pipeline.pid, out)
                result.profile_file = str(out) if spy is not None else None
            load_started = time.time()
            with Sampler() as cpu:
                report = await steady_load(
                    dsn,
                    bootstrap_rate=spec.bootstrap_rate,
                    other_rate=spec.other_rate,
                    seconds=spec.seconds,
                    after_commit=after_commit,
                )
            load_ended = time.time()
            result.cores = cpu.cores(load_started, load_ended, inner=True)
            result.machine = cpu.machine(load_started, load_ended, inner=True)
            profiling.stop(spy)
            result.load = report.as_dict()
            check_alive(procs)
            expected = len(report.bootstraps) + len(warm)
            started = await starts.start_times(
                client, names.task_queue, expected, wait_s=opts.settle_seconds
            )
            wanted_ids = [ev.workflow_id_for(b.org_id) for b in (*warm, *report.bootstraps)]
            started.update(await starts.describe_missing(client, wanted_ids, started))
            log.info("path=%s started %d of %d workflows", path, len(started), expected)
            if pipeline is not None:
                result.peak_rss_mib = peak_rss_mib(pipeline.pid)
                result.cpu_seconds = cpu_seconds(pipeline.pid)
            for proc in procs:
                stop_process(proc)
            commits = await asyncio.to_thread(probe.read_slot, dsn, names.probe_slot)
            appended = await topics.read_all(svc.kafka, names.topic) if path == "ours" else []
            compute(result, commits, report.bootstraps, started, appended, load_started)
            result.load_average = LoadAround(before, load1())
        finally:
            profiling.stop(spy)
            for proc in procs:
                stop_process(proc)
            if path == "ours":
                await topics.delete_topics(svc.kafka, f"bench-{names.run_id}")
    return result
