"""The reader as a real process, SIGKILLed mid-stream and restarted (DESIGN invariants 1, 2).

A background writer commits 100,000 events (multi-row and single-row transactions) while
``pipeline reader`` streams them into Kafka; the process is killed without any cleanup,
once at a moment chosen by progress (Kafka holds >= 20,000 records) and once at the
deterministic kill point ``reader.after_ack_before_flush`` (committed in Kafka, not yet
confirmed to PostgreSQL), then restarted until it has caught up; every event is in the
topic exactly once (read_committed), however much of it the slot resent. Throughout, a sampler
reads the slot's confirmed_flush_lsn and then Kafka's high watermarks: every transaction
whose commit LSN lies below a sampled confirmed_flush_lsn must already have been in
Kafka at that moment (the tracker confirms a commit's END lsn, so the transactions the
slot will never send again are exactly those with ``commit_lsn < confirmed_flush``).

Also: a server with ``wal_level=replica`` is refused with an error that names the
setting and the fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import uuid
from bisect import bisect_left
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import orjson
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from pipeline.dev.layout import DevLayout
from pipeline.dev.postgres import Postgres
from pipeline.migrate import migrate
from replication.errors import WalLevelError
from replication.lsn import LSN, Position
from replication.reader import Reader, ReaderConfig

pytestmark = pytest.mark.integration

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


def _reader_env(dsn: str, bootstrap: str, topic: str, slot: str) -> dict[str, str]:
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
def _reader(
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


def _log_tail(log: Path) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-30:])


async def _until(
    check: Callable[[], Awaitable[bool]], about: Callable[[], object], timeout: float = 120
) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not await check():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not reached within {timeout}s: {about()}") from None


@contextlib.asynccontextmanager
async def _background(*coros: Awaitable[None]) -> AsyncIterator[list[asyncio.Task[None]]]:
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        yield tasks
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t


# -- the scenario -------------------------------------------------------------------------


@dataclass(slots=True)
class Outcome:
    copies: list[Copy]
    samples: list[Sample]
    confirmed_at_kill: LSN
    watermarks_at_kill: dict[int, int]
    exit_code: int | None


async def _crash_and_restart(
    dsn: str,
    bootstrap: str,
    tmp_path: Path,
    *,
    kill_at: str | None,
    kill_when_kafka_holds: int | None,
    backlog_first: int | None,
) -> Outcome:
    suffix = uuid.uuid4().hex[:10]
    topic, slot = f"crash-{suffix}", f"crash_{suffix}"
    env = _reader_env(dsn, bootstrap, topic, slot)
    log = tmp_path / "reader.log"
    writer = Writer(dsn, pause_after=backlog_first)
    if backlog_first is not None:
        # The slot exists before the backlog; the reader takes it over as it finds it.
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
        writer.start()
        await asyncio.to_thread(writer.paused.wait, CATCH_UP_TIMEOUT)
        assert writer.paused.is_set(), writer.error
    collector = Collector(bootstrap, topic)
    async with Watch(dsn, bootstrap, topic, slot) as watch:
        with _reader(env, log, kill_at) as proc:

            async def streaming() -> bool:
                state = await watch.slot()
                assert proc.poll() is None, _log_tail(log)
                return state is not None and state[0]

            await _until(streaming, lambda: _log_tail(log))
            async with _background(collector.run(), watch.run()):
                if backlog_first is None:
                    writer.start()
                else:
                    writer.resume.set()
                if kill_when_kafka_holds is not None:

                    async def enough() -> bool:
                        # Mid-stream: Kafka holds enough and the slot confirmed some of it.
                        assert proc.poll() is None, _log_tail(log)
                        sample = await watch.sample()
                        first = collector.first_commit
                        return (
                            sum(sample.watermarks.values()) >= kill_when_kafka_holds
                            and first is not None
                            and sample.confirmed > first
                        )

                    await _until(enough, lambda: watch.samples[-1:], CATCH_UP_TIMEOUT)
                    proc.send_signal(signal.SIGKILL)
                await asyncio.to_thread(proc.wait, CATCH_UP_TIMEOUT)
                exit_code = proc.returncode

                # The walsender notices the dead connection; from then on the slot's
                # confirmed position is what the killed reader had reported.
                async def released() -> bool:
                    state = await watch.slot()
                    return state is not None and not state[0]

                await _until(released, lambda: "slot still active after the kill")
                at_kill = await watch.sample()

                with _reader(env, log) as again:
                    await asyncio.to_thread(writer.join, CATCH_UP_TIMEOUT)
                    assert not writer.is_alive() and writer.error is None, writer.error
                    with psycopg.connect(dsn) as conn:
                        row = conn.execute(
                            "SELECT array_agg(id::text) FROM domain_events"
                        ).fetchone()
                    assert row is not None
                    all_ids = set(row[0])
                    assert len(all_ids) == EVENTS

                    async def caught_up() -> bool:
                        assert again.poll() is None, _log_tail(log)
                        if not all_ids <= collector.ids:
                            return False
                        last = max(c.position.commit_lsn for c in collector.copies)
                        sample = await watch.sample()
                        return sample.confirmed > last

                    await _until(
                        caught_up,
                        lambda: (len(collector.ids), watch.samples[-1:], _log_tail(log)),
                        CATCH_UP_TIMEOUT,
                    )
                    again.send_signal(signal.SIGTERM)
                    assert await asyncio.to_thread(again.wait, 60) == 0, _log_tail(log)
                final = await watch.watermarks()

                async def collected() -> bool:
                    return collector.holds_up_to(final)

                await _until(collected, lambda: (collector.next_offset, final))
    return Outcome(
        collector.copies, watch.samples, at_kill.confirmed, at_kill.watermarks, exit_code
    )


def _check(dsn: str, outcome: Outcome) -> None:
    """Every invariant the crash must not break."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT id::text, xmin::text::bigint, stream_id::text, stream_version "
            "FROM domain_events"
        ).fetchall()
    assert len(rows) == EVENTS
    txn_of = {r[0]: r[1] for r in rows}

    # Kafka holds every event; a repeat carries the position of the first copy.
    ordered = sorted(outcome.copies, key=lambda c: (c.partition, c.offset))
    first: dict[str, Copy] = {}
    repeats: list[Copy] = []
    for c in ordered:
        seen = first.setdefault(c.event_id, c)
        if seen is not c:
            repeats.append(c)
            assert c.position == seen.position, (seen, c)
            assert c.partition == seen.partition, (seen, c)
    assert set(first) == set(txn_of), "Kafka does not hold exactly the table's events"

    # Position (invariant 1): one commit LSN per transaction, idx 0..n-1 inside it.
    by_txn: dict[int, list[Copy]] = defaultdict(list)
    for event_id, c in first.items():
        by_txn[txn_of[event_id]].append(c)
    commit_of: dict[int, LSN] = {}
    for xid, copies in by_txn.items():
        lsns = {c.position.commit_lsn for c in copies}
        assert len(lsns) == 1, (xid, lsns)
        assert sorted(c.position.idx for c in copies) == list(range(len(copies))), xid
        commit_of[xid] = lsns.pop()
    assert len(set(commit_of.values())) == len(commit_of)

    # Order (invariant 4): per stream one partition; first copies in version order.
    per_stream: dict[bytes, list[Copy]] = defaultdict(list)
    for c in sorted(first.values(), key=lambda c: (c.partition, c.offset)):
        per_stream[c.key].append(c)
    for key, copies in per_stream.items():
        assert len({c.partition for c in copies}) == 1, key
        assert [c.stream_version for c in copies] == list(range(1, len(copies) + 1)), key
        assert [c.position for c in copies] == sorted(c.position for c in copies), key

    # Flush only what is durable (invariant 2), at every sample: each transaction with
    # commit_lsn < confirmed_flush_lsn was entirely below the watermarks read after it.
    txns = sorted(commit_of.items(), key=lambda t: t[1])
    commits = [lsn for _, lsn in txns]
    reach: list[dict[int, int]] = []  # per prefix of txns: highest first-copy offset + 1
    running: dict[int, int] = defaultdict(int)
    for xid, _ in txns:
        for c in by_txn[xid]:
            running[c.partition] = max(running[c.partition], c.offset + 1)
        reach.append(dict(running))
    for sample in outcome.samples:
        k = bisect_left(commits, sample.confirmed)  # txns [0, k) have commit_lsn < confirmed
        if k == 0:
            continue
        for p, needed in reach[k - 1].items():
            assert needed <= sample.watermarks.get(p, 0), (
                f"slot confirmed {sample.confirmed} while partition {p} held "
                f"{sample.watermarks.get(p, 0)} records but {needed} were needed"
            )

    # Each event once in Kafka (invariant 8): the restart resent what the slot had not
    # confirmed, and dropped what the topic already held.
    assert not repeats, f"{len(repeats)} event(s) in the topic twice, e.g. {repeats[:3]}"
    confirmed_txns = bisect_left(commits, outcome.confirmed_at_kill)
    assert 0 < confirmed_txns < len(commits), "the kill was not in the middle of the stream"


async def test_sigkill_mid_stream_loses_nothing(
    fresh_db: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Killed at a moment chosen by progress: Kafka already holds >= 20,000 records."""
    outcome = await _crash_and_restart(
        fresh_db,
        kafka_bootstrap,
        tmp_path,
        kill_at=None,
        kill_when_kafka_holds=20_000,
        backlog_first=None,
    )
    assert outcome.exit_code == -signal.SIGKILL
    _check(fresh_db, outcome)


async def test_sigkill_after_ack_before_flush_loses_nothing(
    fresh_db: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Killed at the deterministic point where Kafka acked what the slot was not told.

    Half the events are a backlog written before the reader starts, so the kill at the
    third status update that would advance the flush position is well inside the stream.
    """
    outcome = await _crash_and_restart(
        fresh_db,
        kafka_bootstrap,
        tmp_path,
        kill_at="reader.after_ack_before_flush:3",
        kill_when_kafka_holds=None,
        backlog_first=EVENTS // 2,
    )
    assert outcome.exit_code == -signal.SIGKILL  # the process killed itself at the point
    _check(fresh_db, outcome)
    # Kafka held events the slot had not confirmed: the slot sent them again and the
    # restarted reader dropped them (_check found none twice).
    log = (tmp_path / "reader.log").read_text(errors="replace")
    dropped = re.search(r"(\d+) event\(s\) already in topic \S+ were not sent again", log)
    assert dropped is not None and int(dropped[1]) > 0, "expected the restart to drop some"


# -- wal_level ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_wal_level_not_logical_is_a_clear_error(
    dev_layout: DevLayout, tmp_path: Path
) -> None:
    layout = replace(dev_layout, state_dir=tmp_path / "replica-cluster", pg_port=_free_port())
    server = Postgres(
        layout,
        settings={"wal_level": "replica", "shared_buffers": "32MB", "max_connections": "20"},
    )
    try:
        await asyncio.to_thread(server.start)
        await asyncio.to_thread(server.wait_healthy)
        dsn = layout.database_url
        await asyncio.to_thread(migrate, dsn)
        config = ReaderConfig(dsn=dsn, kafka_bootstrap=dev_layout.kafka_bootstrap)
        with pytest.raises(WalLevelError) as caught:
            await Reader(config).run(asyncio.Event())
        message = str(caught.value)
        assert "wal_level is 'replica'" in message
        assert "wal_level = logical" in message and "restart PostgreSQL" in message

        # The same through the CLI: exit code 2 (configuration), the message on stderr.
        env = _reader_env(dsn, dev_layout.kafka_bootstrap, "domain-events", "pipeline")
        result = await asyncio.to_thread(
            subprocess.run, [str(PIPELINE), "reader"], env=env, capture_output=True, text=True
        )
        assert result.returncode == 2, result.stderr
        assert "wal_level = logical" in result.stderr
    finally:
        await asyncio.to_thread(server.stop)
        shutil.rmtree(server.root, ignore_errors=True)
