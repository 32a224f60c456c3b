"""The end-to-end drain against its two ceilings, in one run: the reader alone, a bare
single Faust agent, and ``pipeline run``, on the same backlog.

A round fills a fresh database with one mixed backlog (:mod:`bench.drain_fill`: N events,
one per transaction, through ``api.emit_domain_event``, then a sentinel transaction with
an event on every partition). Two replication slots exist before the backlog, so both
WAL drains read it from the WAL, as after an outage. Then, one after the other:

- ``reader``: ``pipeline reader`` alone (WAL -> Kafka) on the first slot, into a topic of
  its own; done when its slot confirmed the sentinel. Its end time is the broker's append
  time of the topic's last record; its "first out" is when its slot was first seen
  streaming (it decodes WAL before its first append).
- ``bare``: ``bench.bare_agent`` (plain Faust, one agent iterating ``stream.events()``,
  acking, nothing else) on the topic the reader just wrote: the same content; done when
  it counted every record (its own clock and CPU time at that moment).
- ``ours``: ``pipeline run`` (reader + agents; the stand-in worker serves the backlog's
  bootstraps) on the second slot; done when every partition's projection checkpoint
  (committed with the projection rows) reached the sentinel: per-partition order makes
  that "every backlog event folded and committed". Its end time is the commit time of
  those checkpoint rows (``track_commit_timestamp``), its first-out time the broker's
  append time of the first record of its topic.

Every drain records the 1-minute load average before and after it, and the CPU seconds
(utime + stime, ``/proc/<pid>/stat``) of its process when it was done.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import time
from dataclasses import dataclass, field

import psycopg

from bench import topics
from bench.cpu_share import Quiet, Sampler, wait_quiet
from bench.drain_fill import PARTITIONS, mixed_backlog, write_sentinel
from bench.harness import (
    RESULTS,
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
)
from bench.latency import Options, worker_argv
from bench.reader_backlog import settle
from bench.runs import LoadAround, load1
from bench.stats import rate
from bench.threads import ThreadSampler, ThreadUsage

log = logging.getLogger(__name__)

KINDS = ("reader", "bare", "ours")


@dataclass(slots=True)
class One:
    """One measured drain; times are POSIX seconds."""

    kind: str  # reader | bare | ours
    events: int
    started: float = 0.0  # the process was started
    first_out: float = 0.0  # its first record came out (see the module docstring)
    done: float = 0.0
    load: LoadAround | None = None
    cpu_seconds: float | None = None  # when done, start-up included
    cpu_at_first: float | None = None  # when the first record came out
    peak_rss_mib: float | None = None
    complete: bool = False
    # Of an unfinished ``pipeline run``: Kafka offsets its checkpoints covered at the limit
    # (transaction markers count too: an upper bound of the records folded).
    covered_at_limit: int | None = None
    # The wait for a quiet machine before it (bench.cpu_share.wait_quiet).
    quiet: Quiet | None = None
    # From its first record out to done: cores by role (bench.cpu_share), and the whole
    # machine's (busy, stolen) cores from /proc/stat.
    cores: dict[str, float] = field(default_factory=dict)
    machine: tuple[float, float] | None = None
    # ``pipeline run`` only (bench.threads): its busiest thread on a core and waiting for
    # one, and its other threads on a core, over the window above and over its last half.
    threads: ThreadUsage | None = None
    threads_last_half: ThreadUsage | None = None

    @property
    def seconds_from_start(self) -> float:
        return self.done - self.started

    @property
    def seconds_after_first(self) -> float:
        return self.done - self.first_out

    @property
    def rate(self) -> float | None:
        """Events/s from process start; None if it did not finish."""
        return rate(self.events, self.seconds_from_start) if self.complete else None

    @property
    def rate_after_first(self) -> float | None:
        """Events/s from the first record out; None if it did not finish."""
        return rate(self.events, self.seconds_after_first) if self.complete else None

    @property
    def cpu_us_per_event(self) -> float | None:
        """CPU µs per event, the process's start-up included."""
        if self.cpu_seconds is None or not self.complete or not self.events:
            return None
        return self.cpu_seconds / self.events * 1e6

    @property
    def cpu_us_per_event_after_first(self) -> float | None:
        """CPU µs per event from the first record out (start-up left out)."""
        if self.cpu_seconds is None or self.cpu_at_first is None or not self.complete:
            return None
        return (self.cpu_seconds - self.cpu_at_first) / self.events * 1e6 if self.events else None


def cpu_at(samples: list[tuple[float, float]], t: float) -> float | None:
    """The CPU seconds at time ``t``, linearly between the (time, cpu) samples around it
    (pure); the first or last sample outside their range; None without samples."""
    if not samples:
        return None
    ordered = sorted(samples)
    if t <= ordered[0][0]:
        return ordered[0][1]
    for (t0, c0), (t1, c1) in itertools.pairwise(ordered):
        if t0 <= t <= t1:
            return c0 if t1 == t0 else c0 + (c1 - c0) * (t - t0) / (t1 - t0)
    return ordered[-1][1]


def _sample(samples: list[tuple[float, float]], pid: int) -> None:
    cpu = cpu_seconds(pid)
    if cpu is not None:
        samples.append((time.time(), cpu))


@dataclass(slots=True)
class Round:
    """One round: the three drains of one backlog."""

    run: int
    events: int
    bootstraps: int
    fill_seconds: float
    records_in_topic: int = 0
    drains: dict[str, One] = field(default_factory=dict)


def _slot(dsn: str, slot: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))


def _slot_state(dsn: str, slot: str, lsn: str) -> tuple[bool, bool]:
    """(a walsender streams the slot, the slot confirmed past ``lsn``)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT active, confirmed_flush_lsn > %s::pg_lsn FROM pg_replication_slots "
            "WHERE slot_name = %s",
            (lsn, slot),
        ).fetchone()
    return (bool(row[0]), bool(row[1])) if row else (False, False)


def _env(svc: Services, names: Names, dsn: str) -> dict[str, str]:
    return svc.env(names, PIPELINE_DATABASE_URL=dsn, PIPELINE_INITIAL_SNAPSHOT="false")


async def reader_drain(
    svc: Services, names: Names, dsn: str, inside: str, n: int, opts: Options, limit_s: float
) -> One:
    """``pipeline reader`` alone: until its slot confirmed the sentinel."""
    one = One("reader", n)
    before = load1()
    one.started = time.time()
    proc = start_process(
        "reader", pipeline_argv("reader"), _env(svc, names, dsn), opts.log_dir / names.run_id
    )
    samples: list[tuple[float, float]] = []
    streaming: float | None = None
    try:
        while time.time() - one.started < limit_s:
            check_alive([proc])
            _sample(samples, proc.pid)
            active, past = await asyncio.to_thread(_slot_state, dsn, names.slot, inside)
            if active and streaming is None:
                streaming = time.time()
            if past:
                one.complete = True
                break
            await asyncio.sleep(0.05)
        one.cpu_seconds = cpu_seconds(proc.pid)
        one.peak_rss_mib = peak_rss_mib(proc.pid)
        polled = time.time()
    finally:
        stop_process(proc)
    one.load = LoadAround(before, load1())
    span = await topics.span(svc.kafka, names.topic)
    # The reader's work starts before its first append (the WAL is decoded first, and a
    # small backlog fits in one produce batch): count from when its slot was first seen
    # streaming (polled every 50 ms), or the first append if that came earlier.
    one.first_out = min(streaming or span.first_appended, span.first_appended or one.started)
    one.done = span.last_appended if one.complete else polled
    one.cpu_at_first = cpu_at(samples, one.first_out)
    return one


async def bare_drain(
    svc: Services, topic: str, records: int, n: int, opts: Options, limit_s: float
) -> One:
    """The bare single Faust agent counting the ``records`` records of ``topic``."""
    one = One("bare", n)
    names = Names.fresh("drain_bare")
    out = RESULTS / "tmp" / f"{names.run_id}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = python_argv(
        "bench.bare_agent",
        svc.kafka,
        topic,
        names.group,
        str(records),
        str(out),
        str(RESULTS / "tmp" / names.run_id / "faust"),
    )
    before = load1()
    one.started = time.time()
    proc = start_process("bare-agent", argv, dict(os.environ), opts.log_dir / names.run_id)
    try:
        while proc.poll() is None and time.time() - one.started < limit_s and not out.exists():
            one.peak_rss_mib = peak_rss_mib(proc.pid) or one.peak_rss_mib
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # the result file is written in one call; let it land
    finally:
        stop_process(proc)
        await topics.delete_topics(svc.kafka, names.group)  # Faust's own topics, if any
    one.load = LoadAround(before, load1())
    if out.exists():
        result = json.loads(out.read_text())
        one.complete = True
        one.first_out = result["first"]
        one.done = result["done"]
        one.cpu_seconds = result.get("cpu_seconds")
        one.cpu_at_first = result.get("cpu_at_first")
    else:
        one.done = one.first_out = time.time()
    return one


_CHECKPOINTS = (
    "SELECT count(DISTINCT kafka_partition), "
    "extract(epoch FROM max(pg_xact_commit_timestamp(xmin)))::float8 "
    "FROM pipeline_checkpoints WHERE topic = %s AND commit_lsn >= %s::pg_lsn"
)


async def ours_drain(
    svc: Services, names: Names, dsn: str, inside: str, n: int, opts: Options, limit_s: float
) -> One:
    """``pipeline run`` until every partition's projection checkpoint reached the sentinel."""
    one = One("ours", n)
    env = _env(svc, names, dsn)
    logs = opts.log_dir / names.run_id
    worker = start_process("worker", worker_argv(opts), env, logs)
    before = load1()
    one.started = time.time()
    proc = start_process("pipeline-run", pipeline_argv("run"), env, logs)
    samples: list[tuple[float, float]] = []
    threads = ThreadSampler(proc.pid).start()
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            while time.time() - one.started < limit_s:
                check_alive([proc, worker])
                _sample(samples, proc.pid)
                got = conn.execute(_CHECKPOINTS, (names.topic, inside)).fetchone()
                if got is not None and got[0] >= PARTITIONS:
                    one.cpu_seconds = cpu_seconds(proc.pid)
                    # The last checkpoint's commit, capped by when it was seen (a later
                    # batch of the pipeline's own events may have rewritten a row since).
                    one.done = min(float(got[1]), time.time())
                    one.complete = True
                    break
                await asyncio.sleep(0.1)
            if not one.complete:
                one.cpu_seconds = cpu_seconds(proc.pid)
                one.done = time.time()
                row = conn.execute(
                    "SELECT coalesce(sum(kafka_offset), 0) FROM pipeline_checkpoints "
                    "WHERE topic = %s",
                    (names.topic,),
                ).fetchone()
                one.covered_at_limit = int(row[0]) if row else 0
        one.peak_rss_mib = peak_rss_mib(proc.pid)
    finally:
        threads.stop()
        stop_process(proc)
        stop_process(worker)
    one.load = LoadAround(before, load1())
    span = await topics.span(svc.kafka, names.topic)
    one.first_out = span.first_appended or one.started
    one.cpu_at_first = cpu_at(samples, one.first_out)
    one.threads = threads.usage(one.first_out, one.done)
    one.threads_last_half = threads.usage((one.first_out + one.done) / 2, one.done)
    return one


async def one_round(
    svc: Services, run: int, n: int, bootstrap_every: int, opts: Options, kinds: tuple[str, ...]
) -> Round:
    """Fill a fresh database, then drain it with each of ``kinds`` in order."""
    ours_names = Names.fresh("drain_ours")
    reader_names = Names.fresh("drain_reader")
    limit_s = max(180.0, n / 200)
    with fresh_database(svc, ours_names) as dsn:
        try:
            _slot(dsn, ours_names.slot)
            _slot(dsn, reader_names.slot)
            await topics.create_topic(svc.kafka, ours_names.topic, PARTITIONS)
            await topics.create_topic(svc.kafka, reader_names.topic, PARTITIONS)
            t = time.monotonic()
            boots = await asyncio.to_thread(mixed_backlog, dsn, n, bootstrap_every)
            inside = await asyncio.to_thread(write_sentinel, dsn)
            rnd = Round(run, n, boots, time.monotonic() - t)
            log.info("backlog: %d events (%d bootstraps) in %.1fs", n, boots, rnd.fill_seconds)
            # The vacuum and checkpoint the backlog calls for, now rather than inside one
            # of the drains (as the reader's own benchmark does).
            await asyncio.to_thread(settle, dsn)
            for kind in kinds:
                quiet = await asyncio.to_thread(wait_quiet)
                log.info(
                    "run %d %s: machine %s after %.1fs (%.2f cores busy)",
                    run,
                    kind,
                    "quiet" if quiet.reached else "still busy",
                    quiet.waited_s,
                    quiet.busy_cores,
                )
                with Sampler() as cpu:
                    if kind == "reader":
                        one = await reader_drain(svc, reader_names, dsn, inside, n, opts, limit_s)
                        rnd.records_in_topic = (
                            await topics.span(svc.kafka, reader_names.topic)
                        ).records
                    elif kind == "bare":
                        if not rnd.records_in_topic:
                            raise ValueError(
                                "the bare agent drains the reader's topic: run it first"
                            )
                        one = await bare_drain(
                            svc, reader_names.topic, rnd.records_in_topic, n, opts, limit_s
                        )
                    else:
                        one = await ours_drain(svc, ours_names, dsn, inside, n, opts, limit_s)
                one.quiet = quiet
                # Inside the drain: its processes are stopped right after it is done.
                one.cores = cpu.cores(one.first_out, one.done, inner=True)
                one.machine = cpu.machine(one.first_out, one.done, inner=True)
                rnd.drains[kind] = one
                log.info(
                    "run %d %s: %d events in %.1fs from start, %.1fs after the first record, "
                    "cpu %s s, load %s, machine %s cores busy%s",
                    run,
                    kind,
                    n,
                    one.seconds_from_start,
                    one.seconds_after_first,
                    f"{one.cpu_seconds:.1f}" if one.cpu_seconds is not None else "?",
                    one.load.text() if one.load else "?",
                    f"{one.machine[0]:.2f}" if one.machine else "?",
                    "" if one.complete else " INCOMPLETE",
                )
        finally:
            for prefix in (ours_names.topic, reader_names.topic):
                await topics.delete_topics(svc.kafka, prefix)
    return rnd
