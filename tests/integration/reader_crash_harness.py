"""The harness of the reader crash tests (test_reader_crash.py): a background writer that
commits events with plain SQL, a collector of everything the topic holds, a sampler of the
slot's confirmed position against Kafka's high watermarks, and the `pipeline reader`
process with its environment."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import psycopg
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from replication.lsn import LSN, Position

PIPELINE = Path(sys.executable).parent / "pipeline"
PARTITIONS = 4
EVENTS = 100_000
BATCHES = 900  # multi-row transactions of BATCH_ROWS rows ...
BATCH_ROWS = 100
SINGLES = EVENTS - BATCHES * BATCH_ROWS  # ... interleaved with single-row transactions
STREAMS = 200
# Generous bound for a hang only; nothing here asserts on speed.
CATCH_UP_TIMEOUT = 480.0

INSERT = (
    "INSERT INTO domain_events (stream_id, stream_type, stream_version, event_type, event_data) "
    "SELECT s, 'organization', v, 'crash.test', jsonb_build_object('seq', q) "
    "FROM unnest(%s::uuid[], %s::int[], %s::int[]) AS t(s, v, q)"
)


# -- the background writer ---------------------------------------------------------------


class Writer(threading.Thread):
    """Commits EVENTS events: BATCHES transactions of BATCH_ROWS rows and SINGLES single
    rows, interleaved, over STREAMS streams with gap-free stream_versions.

    ``pause_after`` events into the run it stops until ``resume`` is set (lets a test
    build a backlog before the reader starts).
    """

    def __init__(self, dsn: str, pause_after: int | None = None) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.pause_after = pause_after
        self.paused = threading.Event()
        self.resume = threading.Event()
        self.error: BaseException | None = None
        self.written = 0

    def run(self) -> None:
        try:
            self._write()
        except BaseException as exc:
            self.error = exc

    def _write(self) -> None:
        streams = [uuid.uuid4() for _ in range(STREAMS)]
        versions = [0] * STREAMS
        singles_per_batch, extra = divmod(SINGLES, BATCHES)
        seq = 0

        def rows(n: int, first_stream: int) -> tuple[list[uuid.UUID], list[int], list[int]]:
            nonlocal seq
            ids, vers, seqs = [], [], []
            for i in range(n):
                k = (first_stream + i // 10) % STREAMS  # runs of 10 events per stream
                versions[k] += 1
                seq += 1
                ids.append(streams[k])
                vers.append(versions[k])
                seqs.append(seq)
            return ids, vers, seqs

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            for b in range(BATCHES):
                conn.execute(INSERT, rows(BATCH_ROWS, b * 7))
                for s in range(singles_per_batch + (1 if b < extra else 0)):
                    conn.execute(INSERT, rows(1, b * 13 + s))
                self.written = seq
                if self.pause_after is not None and seq >= self.pause_after:
                    self.pause_after = None
                    self.paused.set()
                    self.resume.wait()
        assert seq == EVENTS


# -- Kafka: everything the topic holds, and its high watermarks ---------------------------


@dataclass(frozen=True, slots=True)
class Copy:
    """One Kafka record of an event (an event may have several after a crash)."""

    partition: int
    offset: int
    key: bytes
    event_id: str
    stream_version: int
    position: Position


@dataclass(slots=True)
class Collector:
    """Consumes the topic from the beginning for the whole test, in the background."""

    bootstrap: str
    topic: str
    copies: list[Copy] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    first_commit: LSN | None = None  # the lowest commit LSN seen so far
    next_offset: dict[int, int] = field(default_factory=dict)

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            max_partition_fetch_bytes=16 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
            isolation_level="read_committed",
        )
        await consumer.start()
        try:
            tps = [TopicPartition(self.topic, p) for p in range(PARTITIONS)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            while True:
                batch = await consumer.getmany(timeout_ms=200, max_records=20_000)
                for tp, msgs in batch.items():
                    for m in msgs:
                        headers = dict(m.headers)
                        row = orjson.loads(m.value or b"{}")
                        copy = Copy(
                            tp.partition,
                            m.offset,
                            m.key or b"",
                            row["id"],
                            row["stream_version"],
                            Position(
                                LSN.parse(headers["commit_lsn"].decode()), int(headers["idx"])
                            ),
                        )
                        self.copies.append(copy)
                        self.ids.add(copy.event_id)
                        if (
                            self.first_commit is None
                            or copy.position.commit_lsn < self.first_commit
                        ):
                            self.first_commit = copy.position.commit_lsn
                # Past the last record and any transaction marker after it.
                for tp in tps:
                    self.next_offset[tp.partition] = await consumer.position(tp)
        finally:
            await consumer.stop()

    def holds_up_to(self, watermarks: dict[int, int]) -> bool:
        return all(self.next_offset.get(p, 0) >= hw for p, hw in watermarks.items())


@dataclass(frozen=True, slots=True)
class Sample:
    """The slot's confirmed_flush_lsn, then (later) Kafka's high watermark per partition."""

    confirmed: LSN
    watermarks: dict[int, int]


class Watch:
    """Samples confirmed_flush_lsn and then the topic's high watermarks, over and over."""

    def __init__(self, dsn: str, bootstrap: str, topic: str, slot: str) -> None:
        self.dsn, self.bootstrap, self.topic, self.slot_name = dsn, bootstrap, topic, slot
        self.samples: list[Sample] = []
        self._lock = asyncio.Lock()  # the sampler task and the test share the connections
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> Watch:
        self._conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, isolation_level="read_committed"
        )
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self._conn is not None:
            await self._conn.close()

    async def slot(self) -> tuple[bool, LSN] | None:
        """(active, confirmed_flush_lsn) of the slot, None while it does not exist."""
        assert self._conn is not None
        async with self._lock:
            cur = await self._conn.execute(
                "SELECT active, confirmed_flush_lsn::text FROM pg_replication_slots "
                "WHERE slot_name = %s",
                (self.slot_name,),
            )
            row = await cur.fetchone()
        if row is None or row[1] is None:
            return None
        active, confirmed = row
        assert isinstance(active, bool) and isinstance(confirmed, str)
        return active, LSN.parse(confirmed)

    async def watermarks(self) -> dict[int, int]:
        assert self._consumer is not None
        tps = [TopicPartition(self.topic, p) for p in range(PARTITIONS)]
        async with self._lock:
            offsets = await self._consumer.end_offsets(tps)
        return {tp.partition: offset for tp, offset in offsets.items()}

    async def sample(self) -> Sample:
        state = await self.slot()
        confirmed = state[1] if state else LSN.ZERO
        # Watermarks read AFTER the confirmed position: anything in Kafka when the slot
        # confirmed is below them.
        sample = Sample(confirmed, await self.watermarks())
        self.samples.append(sample)
        return sample

    async def run(self) -> None:
        while True:
            await self.sample()
            await asyncio.sleep(0.05)


# -- the reader process -------------------------------------------------------------------


def reader_env(dsn: str, bootstrap: str, topic: str, slot: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env.update(
        PIPELINE_DATABASE_URL=dsn,
        PIPELINE_KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        PIPELINE_TEMPORAL_ADDRESS="127.0.0.1:7233",  # validated, never contacted
        PIPELINE_TOPIC=topic,
        PIPELINE_TOPIC_PARTITIONS=str(PARTITIONS),
        PIPELINE_SLOT_NAME=slot,
        PIPELINE_INITIAL_SNAPSHOT="false",
    )
    return env


@contextlib.contextmanager
def reader_process(
    env: dict[str, str], log: Path, kill_at: str | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    env = dict(env)
    if kill_at is not None:
        env["PIPELINE_KILL_AT"] = kill_at
    with log.open("ab") as out:
        proc = subprocess.Popen([str(PIPELINE), "reader"], env=env, stdout=out, stderr=out)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


def log_tail(log: Path) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-30:])


async def until(
    check: Callable[[], Awaitable[bool]], about: Callable[[], object], timeout: float = 120
) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not await check():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not reached within {timeout}s: {about()}") from None


@contextlib.asynccontextmanager
async def background(*coros: Awaitable[None]) -> AsyncIterator[list[asyncio.Task[None]]]:
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        yield tasks
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
