"""Benchmark: drain a WAL backlog into Kafka with our reader, against pg_recvlogical.

    .venv/bin/python bench/bench_reader.py            # 1,000,000 single-row transactions
    .venv/bin/python bench/bench_reader.py --quick    # 100,000
    .venv/bin/python bench/bench_reader.py --events 250000 --profile
    .venv/bin/python bench/bench_reader.py --quick --rows-per-transaction 100 --no-doc

A fresh, migrated database gets two pgoutput slots created one after the other, with
nothing written to the database in between, so both start at the same point; then the
backlog is written (N single-row transactions, each a ``domain_events`` row, committed
one by one by a server-side procedure in parallel sessions; ``--rows-per-transaction``
groups them). Both consumers then drain
the identical backlog:

(a) ``pipeline reader`` as a subprocess (the real process, configured by env), timed
    from its start until Kafka holds all N events *and* the slot's confirmed_flush_lsn
    is past the last commit (everything durable, invariant 2);
(b) ``pg_recvlogical --start`` with the same plugin, publication and column format into
    /dev/null, timed from its start until it exits at ``--endpos`` (the WAL position
    after the backlog): PostgreSQL's own client receiving the same WAL, with no Kafka.
    It is the reference the ratio is taken against, not an upper bound: the walsender
    shares the CPUs, and spends more per event on a client that reads each message as it
    is sent (its CPU time is sampled from /proc for both drains).

Both use pgoutput's binary mode (``binary 'true'``: columns in their types' send
formats, which costs the walsender less CPU than text output) when the server supports
it (PostgreSQL 14+), as the reader does by default; ``--text`` compares text mode
(``PIPELINE_PGOUTPUT_BINARY=false`` for the reader). The mode is in the results.

Peak RSS is the process's VmHWM (ru_maxrss). Results go to bench/results/ as JSON
(git-ignored) and, as a table, to the "Reader: WAL -> Kafka drain" section of
docs/benchmarks.md (other sections of that file are left alone). ``--profile`` samples
the reader with py-spy (``pip install py-spy``) and writes collapsed stacks next to the
JSON, with a summary of the hottest functions printed.

The services must run (``pipeline dev up``); the benchmark uses the same local layout.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import psycopg
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make the project importable
    sys.path.insert(0, str(REPO))

from bench.report import write_section  # noqa: E402
from pipeline.dev.layout import KAFKA_VERSION, DevLayout, load_layout  # noqa: E402
from pipeline.dev.postgres import find_bindir  # noqa: E402
from pipeline.migrate import migrate  # noqa: E402
from replication import native  # noqa: E402
from replication.lsn import LSN  # noqa: E402
from replication.session import BINARY_MIN_SERVER_VERSION  # noqa: E402

RESULTS = REPO / "bench" / "results"
DOC = REPO / "docs" / "benchmarks.md"
SECTION = "## Reader: WAL -> Kafka drain"
PUBLICATION = "pipeline_domain_events"

FILL_PROCEDURE = """
CREATE PROCEDURE pg_temp.bench_fill(p_first bigint, p_last bigint, p_streams int, p_rows int)
LANGUAGE plpgsql AS $$
DECLARE
    i bigint;
BEGIN
    FOR i IN p_first..p_last LOOP
        INSERT INTO domain_events (stream_id, stream_type, stream_version, event_type,
                                   event_data, event_metadata)
        VALUES (md5('bench-stream-' || (i % p_streams))::uuid, 'organization',
                i / p_streams + 1, 'organization.bench.happened',
                jsonb_build_object('seq', i, 'name', 'Organization ' || i,
                                   'subdomain', 'org-' || i, 'plan', 'standard'),
                jsonb_build_object('source', 'bench', 'correlation_id', md5(i::text)));
        IF (i + 1) % p_rows = 0 THEN
            COMMIT;
        END IF;
    END LOOP;
END;
$$
"""


@dataclass(slots=True)
class DrainResult:
    """One consumer's drain of the backlog."""

    seconds: float
    events_per_second: float
    peak_rss_mib: float
    cpu_seconds: float
    # CPU the slot's walsender (the server side of the stream) spent during the drain.
    walsender_cpu_seconds: float = 0.0


def _admin_dsn(layout: DevLayout) -> str:
    return f"postgresql://postgres@{layout.host}:{layout.pg_port}/postgres"


def _confirmed(dsn: str, slot: str) -> LSN:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
            (slot,),
        ).fetchone()
    return LSN.parse(row[0]) if row and row[0] else LSN.ZERO


def _fill_part(dsn: str, first: int, last: int, streams: int, rows: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute(FILL_PROCEDURE)
        conn.execute("CALL pg_temp.bench_fill(%s, %s, %s, %s)", (first, last, streams, rows))


def write_backlog(dsn: str, events: int, sessions: int, rows: int) -> tuple[LSN, LSN, float]:
    """Commit ``events`` events, ``rows`` per transaction; returns (inside_last, end, seconds).

    ``inside_last`` is a WAL position inside the last transaction, before its commit
    record: a slot confirmed past it has confirmed the last commit. ``end`` is the
    insert position after everything, pg_recvlogical's ``--endpos``.
    """
    started = time.perf_counter()
    streams = 1000
    bounds = [events * k // sessions for k in range(sessions + 1)]
    # The last transaction is written alone, below, so the bulk ends before it.
    bounds[-1] -= 1
    with _parallel(sessions) as pool:
        for k in range(sessions):
            if bounds[k + 1] > bounds[k]:
                pool.submit(_fill_part, dsn, bounds[k], bounds[k + 1] - 1, streams, rows)
    last = events - 1
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO domain_events (stream_id, stream_type, stream_version, event_type, "
            "event_data) VALUES (md5('bench-stream-' || (%s::bigint %% %s))::uuid, "
            "'organization', %s::bigint / %s + 1, 'organization.bench.happened', '{}')",
            (last, streams, last, streams),
        )
        row = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
        assert row is not None
        inside_last = LSN.parse(row[0])
        conn.commit()
        row = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
        assert row is not None
        end = LSN.parse(row[0])
    return inside_last, end, time.perf_counter() - started


def settle(dsn: str) -> None:
    """Do now what PostgreSQL would otherwise do during the drains: autovacuum of the new
    rows and the checkpoint their WAL calls for (both are CPU and I/O the drains would
    share at unpredictable moments, differently for each consumer)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) domain_events")
        conn.execute("CHECKPOINT")


class _parallel:
    """A tiny thread pool whose exit waits for every job and re-raises the first error."""

    def __init__(self, workers: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=workers)
        self._futures: list[object] = []

    def __enter__(self) -> _parallel:
        return self

    def submit(self, fn: object, *args: object) -> None:
        self._futures.append(self._pool.submit(fn, *args))  # type: ignore[arg-type]

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True)
        for fut in self._futures:
            fut.result()  # type: ignore[attr-defined]


class WalsenderCpu:
    """Samples the CPU time of the walsender serving ``slot`` (the PostgreSQL backend
    whose pid is the slot's ``active_pid``) from /proc, every 50 ms in a thread; the
    last sample is what it spent (the process ends with the stream)."""

    def __init__(self, dsn: str, slot: str) -> None:
        self._dsn, self._slot = dsn, slot
        self._ticks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> WalsenderCpu:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    @property
    def seconds(self) -> float:
        return self._ticks / os.sysconf("SC_CLK_TCK")

    def _run(self) -> None:
        pid: int | None = None
        with psycopg.connect(self._dsn, autocommit=True) as conn:
            while not self._stop.wait(0.05):
                if pid is None:
                    row = conn.execute(
                        "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s",
                        (self._slot,),
                    ).fetchone()
                    pid = row[0] if row else None
                    if pid is None:
                        continue
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:  # the walsender ended with its stream
                    return
                self._ticks = int(fields[11]) + int(fields[12])  # utime + stime


def _wait4(proc: subprocess.Popen[bytes]) -> tuple[int, float, float]:
    """Reap proc; returns (status, peak RSS MiB, CPU seconds) from the kernel's rusage."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


async def _kafka_total(consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> int:
    offsets = await consumer.end_offsets(partitions)
    return sum(offsets.values())


async def _wait_drained(
    layout: DevLayout,
    proc: subprocess.Popen[bytes],
    dsn: str,
    slot: str,
    topic: str,
    partitions: int,
    events: int,
    inside_last: LSN,
    started: float,
) -> dict[str, float]:
    """Seconds from ``started`` until Kafka held every event ("acked") and until the slot
    confirmed the last commit ("confirmed")."""
    marks: dict[str, float] = {}
    consumer = AIOKafkaConsumer(
        bootstrap_servers=layout.kafka_bootstrap, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        tps: list[TopicPartition] = []
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"the reader exited with {proc.returncode}")
            if not tps:
                if topic in await consumer.topics():
                    tps = [TopicPartition(topic, p) for p in range(partitions)]
            elif "acked" not in marks and await _kafka_total(consumer, tps) >= events:
                marks["acked"] = time.perf_counter() - started
            if "acked" in marks and _confirmed(dsn, slot) > inside_last:
                marks["confirmed"] = time.perf_counter() - started
                break
            await asyncio.sleep(0.05)
        # Offsets, not records: with Kafka transactions each commit's marker takes one
        # offset per partition it touched, so the count may exceed the events.
        total = await _kafka_total(consumer, tps)
        if total < events:
            raise SystemExit(f"Kafka holds {total} records, expected {events}")
    finally:
        await consumer.stop()
    return marks


def drain_ours(
    layout: DevLayout,
    dsn: str,
    slot: str,
    topic: str,
    partitions: int,
    events: int,
    inside_last: LSN,
    profile_to: Path | None,
    binary: bool,
) -> tuple[DrainResult, dict[str, float]]:
    """Run ``pipeline reader`` until all events are acked and the slot confirmed them."""
    env = dict(
        os.environ,
        PIPELINE_DATABASE_URL=dsn,
        PIPELINE_KAFKA_BOOTSTRAP_SERVERS=layout.kafka_bootstrap,
        PIPELINE_TEMPORAL_ADDRESS=layout.temporal_address,
        PIPELINE_TOPIC=topic,
        PIPELINE_TOPIC_PARTITIONS=str(partitions),
        PIPELINE_SLOT_NAME=slot,
        PIPELINE_INITIAL_SNAPSHOT="false",
        PIPELINE_PGOUTPUT_BINARY="true" if binary else "false",
    )
    env.pop("PIPELINE_KILL_AT", None)
    bindir = Path(sys.executable).parent
    log_path = RESULTS / f"reader-{slot}.log"
    with log_path.open("wb") as log:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [str(bindir / "pipeline"), "reader"], env=env, stderr=log, stdout=log
        )
    spy: subprocess.Popen[bytes] | None = None
    if profile_to is not None:
        spy = subprocess.Popen(
            [
                str(bindir / "py-spy"),
                "record",
                "--pid",
                str(proc.pid),
                "--rate",
                "250",
                "--format",
                "raw",
                "--output",
                str(profile_to),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    wal = WalsenderCpu(dsn, slot)
    try:
        with wal:
            marks = asyncio.run(
                _wait_drained(
                    layout, proc, dsn, slot, topic, partitions, events, inside_last, started
                )
            )
            vmhwm = _vm_hwm(proc.pid)
    except BaseException:
        print(f"reader log: {log_path}", file=sys.stderr)
        raise
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    _, rss, cpu = _wait4(proc)
    seconds = marks["confirmed"]
    return DrainResult(seconds, events / seconds, max(rss, vmhwm), cpu, wal.seconds), marks


def _vm_hwm(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", text, re.M)
    return int(match[1]) / 1024 if match else 0.0


def recvlogical_options(binary: bool) -> list[str]:
    """pgoutput's options for pg_recvlogical: the ones our reader sends."""
    options = ["-o", "proto_version=1", "-o", f"publication_names={PUBLICATION}"]
    return [*options, "-o", "binary=true"] if binary else options


def drain_pg_recvlogical(
    layout: DevLayout, dsn: str, dbname: str, slot: str, end: LSN, events: int, binary: bool
) -> DrainResult:
    """Run pg_recvlogical on its slot until it exits at ``end``."""
    argv = [
        str(find_bindir() / "pg_recvlogical"),
        "--start",
        "--slot",
        slot,
        "--plugin=pgoutput",
        *recvlogical_options(binary),
        "--endpos",
        str(end),
        "--fsync-interval=0",  # /dev/null; our reader does not fsync either
        "-f",
        "/dev/null",
        "-h",
        layout.host,
        "-p",
        str(layout.pg_port),
        "-U",
        "postgres",
        "-d",
        dbname,
        "--no-loop",
    ]
    with WalsenderCpu(dsn, slot) as wal:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stderr=subprocess.PIPE)
        code, rss, cpu = _wait4(proc)
        seconds = time.perf_counter() - started
    err = proc.stderr.read().decode() if proc.stderr else ""
    if code != 0:
        raise SystemExit(f"pg_recvlogical exited with {code}: {err}")
    return DrainResult(seconds, events / seconds, rss, cpu, wal.seconds)


def machine_info(layout: DevLayout) -> dict[str, str]:
    """What the figures were measured on."""
    with psycopg.connect(_admin_dsn(layout)) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    pg_version = str(row[0]) if row else "?"
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "memory_gib": f"{mem_kb / 1024 / 1024:.1f}",
        "postgresql": pg_version,
        "kafka": KAFKA_VERSION,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def summarize_profile(path: Path, top: int = 25) -> list[tuple[str, float]]:
    """Share of samples per function (inclusive), from py-spy's collapsed stacks."""
    totals: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        samples += n
        seen = set()
        for frame in stack.split(";"):
            name = re.sub(r":\d+\)$", ")", frame)  # one entry per function, not per line
            if name not in seen:
                seen.add(name)
                totals[name] += n
    return [(name, 100 * n / samples) for name, n in totals.most_common(top)] if samples else []


def write_doc(result: dict[str, object]) -> None:
    """Replace (or add) this benchmark's section of docs/benchmarks.md."""
    ours = result["ours"]
    recv = result["pg_recvlogical"]
    info = result["machine"]
    assert isinstance(ours, dict) and isinstance(recv, dict) and isinstance(info, dict)
    cpu_us = float(ours["cpu_seconds"]) / int(result["events"]) * 1e6  # type: ignore[call-overload]
    binary = bool(result.get("binary", False))
    mode = "binary" if binary else "text"
    compiled = (
        "compiled with mypyc (`scripts/build_native.py`)"
        if result.get("native")
        else "pure Python (not compiled)"
    )
    load = result.get("load_average")
    load_text = (
        f" The 1-minute load average was {load[0]:.1f} when the drains started and "  # type: ignore[index]
        f"{load[1]:.1f} when they ended."  # type: ignore[index]
        if load
        else ""
    )
    recv_options = " ".join(recvlogical_options(binary))
    section = f"""{SECTION}

Written by `bench/bench_reader.py` (the last run; its JSON is in `bench/results/`, git-ignored).
A backlog of **{result["events"]:,}** single-row transactions (one `domain_events` row each,
{result["partitions"]} partitions) is written after two pgoutput slots were created at the same
point; then each consumer drains the identical backlog, both in pgoutput's **{mode}** mode
(columns in {"their types' binary send formats, `binary 'true'`" if binary else "text output"}).
*Ours*: the `pipeline reader` process, from start until Kafka (acks=all, idempotent
producer) holds every event and the slot's confirmed_flush_lsn is past the last commit.
*pg_recvlogical*: `pg_recvlogical --start --plugin=pgoutput {recv_options}
--endpos=<end of backlog> -F 0 -f /dev/null`: PostgreSQL's own C client receiving the
same decoded WAL and throwing it away. It is the reference, not a ceiling: the
walsender (the server process that decodes the WAL and sends it) shares the machine's
CPUs with the consumer, and how much it spends per event depends on how the consumer
reads (the walsender column below). After the backlog is written the database is
settled (`VACUUM (ANALYZE)`, `CHECKPOINT`) so that neither drain shares the machine
with autovacuum or a checkpoint.

Command: `{result["command"]}` (run {result["date"]})

| consumer | seconds | events/s | peak RSS (MiB) | CPU seconds | walsender CPU seconds |
| --- | ---: | ---: | ---: | ---: | ---: |
| ours (`pipeline reader` -> Kafka) | {ours["seconds"]:.1f} | {ours["events_per_second"]:,.0f} | {ours["peak_rss_mib"]:.0f} | {ours["cpu_seconds"]:.1f} | {ours.get("walsender_cpu_seconds", 0.0):.1f} |
| pg_recvlogical -> /dev/null | {recv["seconds"]:.1f} | {recv["events_per_second"]:,.0f} | {recv["peak_rss_mib"]:.0f} | {recv["cpu_seconds"]:.1f} | {recv.get("walsender_cpu_seconds", 0.0):.1f} |

Ratio ours / pg_recvlogical: **{result["ratio"]:.2f}x** (target >= 0.25x and >= 25,000 events/s).
All events were in Kafka after {result["ours_acked_seconds"]:.1f} s; the rest is the
wait for the next status update to confirm them. Writing the backlog took {result["fill_seconds"]:.0f} s.

Machine: {info["nproc"]} CPUs ({info["cpu"]}), {info["memory_gib"]} GiB RAM; PostgreSQL {info["postgresql"]},
Kafka {info["kafka"]} (KRaft, one broker), Python {info["python"]}, Linux {info["kernel"]}.
PostgreSQL, Kafka, the reader and pg_recvlogical share the machine, as in the tests, so
wall-clock figures move with whatever else runs; the reader's CPU seconds per event are
the steadier measure ({cpu_us:.0f} µs here).{load_text} The reader's hot modules were
{compiled}.
"""
    section += """
How the reader keeps up (details in `replication/`): the hot modules are compiled; while
the reader is behind, Kafka batches are held back until they hold 1,000 events, are
50 ms old, or the reader has read everything the server sent (`replication/batcher.py`),
so a backlog goes out in batches of hundreds of events instead of one round trip's
worth, and the broker handles fewer, larger requests. The walsender column is why the
ratio can pass 1: serving pg_recvlogical, which reads every message the moment it is
sent, the walsender spends more CPU per event (most likely one send and one wake-up per
message) than serving our reader, which reads the socket when it holds many; on two
CPUs that difference is throughput.
"""
    if result.get("profile"):
        lines = "\n".join(f"| `{name}` | {share:.0f}% |" for name, share in result["profile"])  # type: ignore[attr-defined]
        section += f"""
Where the reader's time goes (py-spy, `--profile`, inclusive share of samples):

| function | share |
| --- | ---: |
{lines}
"""
    write_section(DOC, SECTION, section)


async def delete_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    except KafkaError as exc:  # never created (the run failed early): nothing to delete
        print(f"topic {topic} not deleted: {exc!r}")
    finally:
        await admin.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print and record the figures."""
    parser = argparse.ArgumentParser(description="reader drain vs pg_recvlogical")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="100,000 events")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--fill-sessions", type=int, default=2)
    parser.add_argument(
        "--rows-per-transaction",
        type=int,
        default=1,
        help="events per transaction of the backlog (default 1: the worst case)",
    )
    parser.add_argument(
        "--text",
        action="store_true",
        help="pgoutput text mode for both consumers (default: binary where the server has it)",
    )
    parser.add_argument("--profile", action="store_true", help="sample the reader with py-spy")
    parser.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")
    parser.add_argument(
        "--doc-from", type=Path, help="only rewrite the docs section from a saved result JSON"
    )
    args = parser.parse_args(argv)
    if args.doc_from is not None:
        write_doc(json.loads(args.doc_from.read_text()))
        return 0
    events = 100_000 if args.quick else args.events
    if args.profile and shutil.which("py-spy", path=str(Path(sys.executable).parent)) is None:
        parser.error("--profile needs py-spy in the virtualenv: pip install py-spy")
    layout = load_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex[:8]
    dbname = f"bench_reader_{run_id}"
    dsn = f"postgresql://postgres@{layout.host}:{layout.pg_port}/{dbname}"
    ours_slot, recv_slot = f"bench_ours_{run_id}", f"bench_recv_{run_id}"
    topic = f"bench-reader-{run_id}"
    with psycopg.connect(_admin_dsn(layout), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
        binary = not args.text and conn.info.server_version >= BINARY_MIN_SERVER_VERSION
    print(f"pgoutput {'binary' if binary else 'text'} mode for both consumers", flush=True)
    try:
        migrate(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            for slot in (ours_slot, recv_slot):
                conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
        print(f"writing {events:,} events, {args.rows_per_transaction} per transaction", flush=True)
        inside_last, end, fill_seconds = write_backlog(
            dsn, events, args.fill_sessions, args.rows_per_transaction
        )
        print(f"backlog written in {fill_seconds:.1f}s, ends at lsn={end}", flush=True)
        settle(dsn)

        profile_to = RESULTS / f"reader-profile-{run_id}.txt" if args.profile else None
        load_start = os.getloadavg()[0]
        ours, marks = drain_ours(
            layout, dsn, ours_slot, topic, args.partitions, events, inside_last, profile_to, binary
        )
        print(f"ours: {ours}", flush=True)
        recv = drain_pg_recvlogical(layout, dsn, dbname, recv_slot, end, events, binary)
        print(f"pg_recvlogical: {recv}", flush=True)
        if _confirmed(dsn, recv_slot) <= inside_last:
            raise SystemExit("pg_recvlogical stopped before the end of the backlog")
        result: dict[str, object] = {
            "benchmark": "reader_drain",
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "command": " ".join(["python bench/bench_reader.py", *(argv or sys.argv[1:])]),
            "events": events,
            "partitions": args.partitions,
            "rows_per_transaction": args.rows_per_transaction,
            "binary": binary,
            "native": bool(native.built()) and not native.stale(),
            "load_average": [load_start, os.getloadavg()[0]],
            "fill_seconds": fill_seconds,
            "ours": asdict(ours),
            "ours_acked_seconds": marks["acked"],
            "pg_recvlogical": asdict(recv),
            "ratio": ours.events_per_second / recv.events_per_second,
            "machine": machine_info(layout),
        }
        if profile_to is not None and profile_to.exists():
            result["profile"] = summarize_profile(profile_to)
            print("reader profile (inclusive %):")
            for name, share in result["profile"]:  # type: ignore[attr-defined]
                print(f"  {share:5.1f}%  {name}")
        out = RESULTS / f"reader-{time.strftime('%Y%m%dT%H%M%S')}-{events}.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(
            f"pgoutput {'binary' if binary else 'text'} mode: "
            f"ours {ours.events_per_second:,.0f} events/s, pg_recvlogical "
            f"{recv.events_per_second:,.0f} events/s, ratio {result['ratio']:.2f}x, "
            f"reader peak RSS {ours.peak_rss_mib:.0f} MiB, "
            f"reader CPU {ours.cpu_seconds / events * 1e6:.1f} µs/event -> {out}"
        )
        if args.no_doc or args.rows_per_transaction != 1:
            print("docs/benchmarks.md not updated (it documents the single-row default)")
        else:
            write_doc(result)
    finally:
        with psycopg.connect(_admin_dsn(layout), autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                "WHERE database = %s AND active",
                (dbname,),
            )
            time.sleep(0.5)
            conn.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                "WHERE database = %s AND NOT active",
                (dbname,),
            )
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        asyncio.run(delete_topic(layout.kafka_bootstrap, topic))
    return 0


if __name__ == "__main__":
    sys.exit(main())
