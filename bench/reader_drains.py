"""The two drains the reader benchmark times over the same backlog: ``pipeline reader``
into Kafka (until Kafka holds every event and the slot confirmed the last commit) and
``pg_recvlogical`` into /dev/null (until its ``--endpos``), each with the CPU of the
walsender serving it sampled from /proc (``bench/bench_reader.py``)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from bench.reader_backlog import confirmed_flush
from pipeline.dev.layout import DevLayout
from pipeline.dev.postgres import find_bindir
from replication.lsn import LSN

RESULTS = Path(__file__).resolve().parent / "results"
PUBLICATION = "pipeline_domain_events"


@dataclass(slots=True)
class DrainResult:
    """One consumer's drain of the backlog."""

    seconds: float
    events_per_second: float
    peak_rss_mib: float
    cpu_seconds: float
    # CPU the slot's walsender (the server side of the stream) spent during the drain.
    walsender_cpu_seconds: float = 0.0


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
            if "acked" in marks and confirmed_flush(dsn, slot) > inside_last:
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


async def delete_topic(bootstrap: str, topic: str) -> None:
    """Remove the run's topic (a failed run may never have created it)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    except KafkaError as exc:  # never created (the run failed early): nothing to delete
        print(f"topic {topic} not deleted: {exc!r}")
    finally:
        await admin.close()
