"""Each event once in Kafka, however the reader dies (DESIGN invariants 6 and 8).

From the outside: events written with plain SQL (``api.emit_domain_event``), ``pipeline
reader`` run as a process and SIGKILLed / SIGSTOPped, the topic read back by a plain
aiokafka consumer with ``isolation_level=read_committed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from replication.lsn import LSN, Position
from replication.producer import EventProducer, transactional_id
from replication.topics import TopicSpec, ensure_topic

pytestmark = pytest.mark.integration

PIPELINE = Path(sys.executable).parent / "pipeline"
PARTITIONS = 4
STREAMS = 40
EMIT = (
    "SELECT api.emit_domain_event(p_stream_id => %s, p_stream_type => 'organization', "
    "p_event_type => 'once.test', p_event_data => %s::jsonb)"
)


def _env(dsn: str, bootstrap: str, topic: str, slot: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env.update(
        PIPELINE_DATABASE_URL=dsn,
        PIPELINE_KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        PIPELINE_TEMPORAL_ADDRESS="127.0.0.1:7233",  # validated, never contacted
        PIPELINE_TOPIC=topic,
        PIPELINE_DEAD_LETTER_TOPIC=f"{topic}-dlq",
        PIPELINE_TOPIC_PARTITIONS=str(PARTITIONS),
        PIPELINE_SLOT_NAME=slot,
    )
    return env


@contextlib.contextmanager
def _reader(env: dict[str, str], log: Path, **extra: str) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(PIPELINE), "reader"], env={**env, **extra}, stdout=out, stderr=out
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
            proc.wait(30)


def _tail(log: Path) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-30:])


async def _until(
    check: Callable[[], Awaitable[bool]], about: Callable[[], object], timeout: float = 180
) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not await check():
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"not reached within {timeout}s: {about()}") from None


def _slot(dsn: str, slot: str) -> tuple[bool, int | None] | None:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT active, active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchone()
    return None if row is None else (bool(row[0]), row[1])


class Writer(threading.Thread):
    """Emits events with plain SQL at a steady pace: single events and transactions of
    several, over STREAMS streams, until ``total`` events are committed."""

    def __init__(self, dsn: str, total: int, seed: int) -> None:
        super().__init__(daemon=True)
        self.dsn, self.total = dsn, total
        self.rng = random.Random(seed)
        self.streams = [uuid.uuid4() for _ in range(STREAMS)]
        self.written = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                while self.written < self.total:
                    n = min(self.rng.choice((1, 1, 1, 3, 10)), self.total - self.written)
                    with conn.transaction():
                        for _ in range(n):
                            stream = self.rng.choice(self.streams)
                            conn.execute(
                                EMIT, (stream, orjson.dumps({"seq": self.written}).decode())
                            )
                            self.written += 1
                    threading.Event().wait(0.03)  # a steady pace over the kills
        except BaseException as exc:
            self.error = exc


@dataclass(frozen=True, slots=True)
class Copy:
    partition: int
    offset: int
    key: bytes
    event_id: str
    stream_version: int
    position: Position


async def _read_all(bootstrap: str, topic: str) -> list[Copy]:
    """Everything a read_committed consumer finds in the topic."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        copies: list[Copy] = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=500)
            for tp, msgs in batch.items():
                for m in msgs:
                    headers = dict(m.headers)
                    row = orjson.loads(m.value or b"{}")
                    copies.append(
                        Copy(
                            tp.partition,
                            m.offset,
                            m.key or b"",
                            row["id"],
                            row["stream_version"],
                            Position(
                                LSN.parse(headers["commit_lsn"].decode()), int(headers["idx"])
                            ),
                        )
                    )
        return copies
    finally:
        await consumer.stop()


async def _high_watermarks(bootstrap: str, topic: str) -> dict[int, int]:
    """What the partitions hold, committed or not (read_uncommitted end offsets)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        return {tp.partition: o for tp, o in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


def _table(dsn: str) -> dict[str, tuple[str, int]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT id::text, stream_id::text, stream_version FROM domain_events")
        return {r[0]: (r[1], r[2]) for r in rows.fetchall()}


def _assert_each_event_once_in_order(dsn: str, copies: list[Copy]) -> None:
    table = _table(dsn)
    seen: dict[str, Copy] = {}
    twice = [c for c in copies if seen.setdefault(c.event_id, c) is not c]
    assert not twice, f"{len(twice)} record(s) in the topic twice, e.g. {twice[:3]}"
    assert set(seen) == set(table), (
        f"missing {len(set(table) - set(seen))}, unknown {len(set(seen) - set(table))}"
    )
    per_stream: dict[bytes, list[Copy]] = defaultdict(list)
    for c in sorted(copies, key=lambda c: (c.partition, c.offset)):
        per_stream[c.key].append(c)
    for key, stream in per_stream.items():
        assert [c.stream_version for c in stream] == list(range(1, len(stream) + 1)), key
        assert [c.position for c in stream] == sorted(c.position for c in stream), key


async def _caught_up(
    dsn: str, bootstrap: str, topic: str, proc: subprocess.Popen[bytes], log: Path
) -> None:
    ids = set(_table(dsn))

    async def all_there() -> bool:
        assert proc.poll() is None, _tail(log)
        return ids <= {c.event_id for c in await _read_all(bootstrap, topic)}

    await _until(all_there, lambda: _tail(log))


async def test_sigkilled_again_and_again_the_reader_leaves_each_event_once_in_kafka(
    fresh_db: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Rows before the slot (the initial snapshot) and 3,000 rows written while the reader
    is SIGKILLed six times (at random moments, and once right after a Kafka commit that the
    slot had not confirmed yet): a read_committed consumer finds every row exactly once,
    each stream in order. Before, each restart resent everything after the slot's
    confirmed LSN that Kafka already held."""
    suffix = uuid.uuid4().hex[:10]
    topic, slot = f"once-{suffix}", f"once_{suffix}"
    env = _env(fresh_db, kafka_bootstrap, topic, slot)
    log = tmp_path / "reader.log"
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        for i in range(50):  # in the table before the slot: they travel in the snapshot
            conn.execute(EMIT, (uuid.uuid4(), orjson.dumps({"before": i}).decode()))
    rng = random.Random(20261201)
    writer = Writer(fresh_db, 3000, seed=1)
    kills = 0
    for round_ in range(6):
        extra = {"PIPELINE_KILL_AT": "reader.after_commit:3"} if round_ == 2 else {}
        with _reader(env, log, **extra) as proc:

            async def streaming(
                proc: subprocess.Popen[bytes] = proc, may_die: bool = bool(extra)
            ) -> bool:
                if proc.poll() is not None:
                    # Only the round with the kill point may end by itself: its third
                    # commit can come before a poll sees the slot active (a CI run timed
                    # out waiting for that), and a commit means it was streaming.
                    assert may_die, _tail(log)
                    return True
                state = _slot(fresh_db, slot)
                return state is not None and state[0]

            await _until(streaming, lambda: _tail(log))
            if not writer.is_alive() and writer.written == 0:
                writer.start()
            if extra:
                await asyncio.to_thread(proc.wait, 120)  # the kill point fires
            else:
                await asyncio.sleep(rng.uniform(0.5, 2.5))
                proc.send_signal(signal.SIGKILL)
                await asyncio.to_thread(proc.wait, 30)
            assert proc.returncode == -signal.SIGKILL, _tail(log)
            kills += 1

        async def released() -> bool:
            state = _slot(fresh_db, slot)
            return state is not None and not state[0]

        await _until(released, lambda: "slot still active after the kill")
    assert kills == 6
    with _reader(env, log) as last:

        async def last_streaming() -> bool:
            assert last.poll() is None, _tail(log)
            state = _slot(fresh_db, slot)
            return state is not None and state[0]

        # Streaming, so past start-up: its SIGTERM handler is set (a SIGTERM while it
        # still imports, when every event may be in Kafka already, would kill it: -15).
        await _until(last_streaming, lambda: _tail(log))
        await asyncio.to_thread(writer.join, 300)
        assert not writer.is_alive() and writer.error is None, writer.error
        await _caught_up(fresh_db, kafka_bootstrap, topic, last, log)
        last.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(last.wait, 60) == 0, _tail(log)
    assert "were not sent again" in log.read_text()
    _assert_each_event_once_in_order(fresh_db, await _read_all(kafka_bootstrap, topic))


def _stopped(pid: int) -> bool:
    """The process is frozen (state T in /proc)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2] == "T"


async def test_a_frozen_reader_whose_slot_was_taken_over_writes_nothing_after_sigcont(
    fresh_db: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Reader A freezes (SIGSTOP) with a Kafka batch in its hands, just before producing
    it: the kill point ``reader.before_produce`` with ``PIPELINE_KILL_SIGNAL=STOP``. Its
    walsender is terminated, reader B takes the slot over and writes every event. When A
    is SIGCONTed it goes on producing its batch: Kafka refuses it (B's start fenced A's
    producer epoch; A's log shows ProducerFenced when the request reaches the broker before
    A's session notices its cut stream), so the topic holds not one record more than
    before, and every event once.
    Before, A's batch was appended (a duplicate, out of order behind B's records)."""
    suffix = uuid.uuid4().hex[:10]
    topic, slot = f"frozen-{suffix}", f"frozen_{suffix}"
    env = _env(fresh_db, kafka_bootstrap, topic, slot)
    log_a, log_b = tmp_path / "reader-a.log", tmp_path / "reader-b.log"
    streams = [uuid.uuid4() for _ in range(8)]

    def emit(n: int, tag: str) -> None:
        with psycopg.connect(fresh_db, autocommit=True) as conn:
            for i in range(n):
                data = orjson.dumps({tag: i}).decode()
                conn.execute(EMIT, (streams[i % len(streams)], data))

    freeze = {"PIPELINE_KILL_AT": "reader.before_produce:2", "PIPELINE_KILL_SIGNAL": "STOP"}
    with _reader(env, log_a, **freeze) as a:

        async def a_streams() -> bool:
            assert a.poll() is None, _tail(log_a)
            state = _slot(fresh_db, slot)
            return state is not None and state[0]

        await _until(a_streams, lambda: _tail(log_a))
        state = _slot(fresh_db, slot)
        assert state is not None and state[1] is not None
        a_walsender = state[1]
        emit(60, "one")  # one transaction each: A hands a batch over, freezes at the 2nd

        async def a_frozen() -> bool:
            return _stopped(a.pid)

        await _until(a_frozen, lambda: _tail(log_a), timeout=60)
        emit(40, "two")
        with psycopg.connect(fresh_db, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (a_walsender,))

        with _reader(env, log_b) as b:
            await _caught_up(fresh_db, kafka_bootstrap, topic, b, log_b)
            state = _slot(fresh_db, slot)
            assert state is not None and state[0] and state[1] != a_walsender
            before = await _high_watermarks(kafka_bootstrap, topic)

            a.send_signal(signal.SIGCONT)

            async def a_waits() -> bool:
                # A's session has ended (its batch refused by the broker or aborted, its
                # stream cut) and its next one finds B holding the slot: it waits.
                return "waiting to take over" in log_a.read_text(errors="replace")

            await _until(a_waits, lambda: _tail(log_a), timeout=90)
            await asyncio.sleep(3.0)  # anything A could still send has had its chance
            assert await _high_watermarks(kafka_bootstrap, topic) == before, _tail(log_a)
            assert a.poll() is None, _tail(log_a)
            b.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(b.wait, 60) == 0, _tail(log_b)
    _assert_each_event_once_in_order(fresh_db, await _read_all(kafka_bootstrap, topic))


async def test_a_new_producer_of_the_slot_fences_the_former_one(kafka_bootstrap: str) -> None:
    """The mechanism itself: the former reader's producer has a record written in its open
    transaction; the new one starts with the same transactional id. The former one's open
    transaction is aborted (a read_committed consumer never sees its record), its next
    batch is refused by the broker and its commit fails; the topic gains no record."""
    topic = f"fence-{uuid.uuid4().hex[:10]}"
    await ensure_topic(kafka_bootstrap, TopicSpec(topic, PARTITIONS))
    tid = transactional_id(topic, "fence_test")
    reports: list[tuple[list[Position], BaseException | None]] = []
    old = EventProducer(
        kafka_bootstrap, topic, lambda p, e: reports.append((p, e)), transactional_id=tid
    )
    new = EventProducer(kafka_bootstrap, topic, lambda p, e: None, transactional_id=tid)
    await old.start()
    try:
        old.add(Position(LSN(0x10), 0), b"stream", b"{}", [])
        await old.flush()
        assert reports == [([Position(LSN(0x10), 0)], None)]  # written, not committed
        await new.start()  # fences `old`: its open transaction is aborted
        before = await _high_watermarks(kafka_bootstrap, topic)
        old.add(Position(LSN(0x10), 1), b"stream", b"{}", [])
        with contextlib.suppress(KafkaError):
            await asyncio.wait_for(old.flush(), 30)
        assert reports[-1][0] == [Position(LSN(0x10), 1)]
        assert isinstance(reports[-1][1], KafkaError), reports
        with pytest.raises(KafkaError):
            await asyncio.wait_for(old.commit(), 30)
        assert await _high_watermarks(kafka_bootstrap, topic) == before
    finally:
        with contextlib.suppress(KafkaError, TimeoutError):
            await asyncio.wait_for(old.stop(), 30)
        await new.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, isolation_level="read_committed")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        got = await consumer.getmany(timeout_ms=2000)
        assert not any(got.values()), got
    finally:
        await consumer.stop()
