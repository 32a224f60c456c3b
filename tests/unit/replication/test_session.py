"""A reader session driven through its Protocols (replication.ports), without PostgreSQL
or Kafka: a stand-in server streams pgoutput frames from the slot's confirmed position on,
as a walsender does; a stand-in topic keeps what a producer delivered. The first
producer loses the broker in mid-stream (KafkaError in its delivery reports), the next
cannot even start, the third works: every event ends up in the topic exactly once, and
the flush position the slot is told never goes backwards.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import orjson
from aiokafka.errors import KafkaConnectionError

from replication.batcher import AcksCallback
from replication.errors import DeliveryError
from replication.frame_loop import Add, Headers
from replication.frames import parse_standby_status
from replication.lsn import LSN, Position
from replication.partitioner import KeyPartitioner
from replication.ports import RecordProducer
from replication.record_value import CLAIM_CHECK_BYTES, CLAIM_CHECK_HEADER
from replication.resume import position_from_headers
from replication.retry import Directive, classify
from replication.session import ReaderConfig, ReaderStats, Session
from replication.slot import SlotState
from tests.unit import pgoutput_builder as b

RELID = 16384
PARTITIONS = 4
TS = 817_000_000_000_000
TRANSACTIONS = 40
EVENTS_PER_TXN = 3


def event_id(txn: int, idx: int) -> str:
    return str(uuid.UUID(int=txn * 1000 + idx + 1))


def event_type(txn: int, idx: int) -> str:
    return f'type.{txn % 3}.{idx} "ü"'


# Raw payload above the claim-check limit, with a key that spells the header's name.
LARGE_EVENT_DATA = '{"event_type": "decoy", "pad": "' + "x" * CLAIM_CHECK_BYTES + '"}'


def txn_lsns(txn: int) -> tuple[int, int]:
    """(commit LSN, end LSN) of transaction ``txn``."""
    commit = 0x1000 + txn * 0x100
    return commit, commit + 0x40


class Server:
    """The walsender's part: each session gets the transactions the slot has not
    confirmed (PostgreSQL skips those whose commit LSN is below the confirmed position),
    after the Relation message, with keepalives between them."""

    def __init__(self, large: frozenset[tuple[int, int]] = frozenset()) -> None:
        self.large = large  # (txn, idx) of the rows too large for a record
        self.confirmed = LSN.ZERO
        self.flushes: list[LSN] = []  # every flush position a status update reported
        self.last_end = txn_lsns(TRANSACTIONS - 1)[1]

    def frames(self) -> list[bytes]:
        relation = b.relation(RELID, "public", "domain_events", b.DOMAIN_EVENTS_COLUMNS)
        out = [b.xlogdata(0, 0, TS, relation)]
        for t in range(TRANSACTIONS):
            commit, end = txn_lsns(t)
            if commit < self.confirmed.value:
                continue
            out.append(b.xlogdata(commit - 0x80, commit - 0x80, TS, b.begin(commit, TS, 700 + t)))
            for i in range(EVENTS_PER_TXN):
                row = b.domain_event_tuple(
                    id=event_id(t, i),
                    stream_id=str(uuid.UUID(int=(t * 7 + i) % 11 + 1)),
                    stream_version=str(t * EVENTS_PER_TXN + i + 1),
                    event_type=event_type(t, i),
                    **({"event_data": LARGE_EVENT_DATA} if (t, i) in self.large else {}),
                )
                out.append(
                    b.xlogdata(commit - 0x40 + i, commit - 0x40 + i, TS, b.insert(RELID, row))
                )
            out.append(b.xlogdata(commit, end, TS, b.commit(commit, end, TS)))
            if t % 5 == 4:
                out.append(b.keepalive(end, TS, reply=t % 10 == 9))
        return out


class Wire:
    """A :class:`~replication.ports.ReplicationStream` over the server's frames, a few
    per read; once they are all read and the slot confirmed the last one, stops."""

    def __init__(self, server: Server, stop: asyncio.Event) -> None:
        self.server = server
        self.stop = stop
        self.on_idle: Callable[[], None] | None = None
        self._frames: list[bytes] = []
        self.commands: list[str] = []

    @property
    def server_version(self) -> int:
        return 150004

    async def query(self, sql: str) -> list[list[str | None]]:
        raise AssertionError(f"the slot exists: no command expected, got {sql!r}")

    async def start_copy(self, sql: str) -> None:
        self.commands.append(sql)
        self._frames = self.server.frames()

    async def read_batch(self, timeout: float, limit: int = 512) -> list[bytes]:
        await asyncio.sleep(0)  # acks run meanwhile, as on a real socket
        if self._frames:
            batch, self._frames = self._frames[:7], self._frames[7:]
            return batch
        if self.on_idle is not None:
            self.on_idle()
        if self.server.confirmed.value >= self.server.last_end:
            self.stop.set()
        await asyncio.sleep(min(timeout, 0.005))
        return []

    async def write(self, payload: bytes) -> None:
        status = parse_standby_status(payload)
        self.server.flushes.append(status.flush)
        self.server.confirmed = max(self.server.confirmed, status.flush)


class Topic:
    """What Kafka holds: records per partition, in the order they were written."""

    def __init__(self) -> None:
        self.partitioner = KeyPartitioner(PARTITIONS)
        self.partitions: list[list[tuple[Position, bytes, bytes, Headers]]] = [
            [] for _ in range(PARTITIONS)
        ]

    async def last_positions(self, partitions: int) -> dict[int, Position | None]:
        assert partitions == PARTITIONS
        return {
            p: position_from_headers(records[-1][3]) if records else None
            for p, records in enumerate(self.partitions)
        }


class Producer:
    """A :class:`~replication.ports.RecordProducer` (idempotent, not transactional):
    records are delivered a batch at a time, reports come from the event loop. Broken
    from its ``fail_from``-th batch on (every later batch fails too, as against a broker
    that is gone), or already at ``start()``."""

    transactional_id: str | None = None

    def __init__(
        self, topic: Topic, on_acks: AcksCallback, *, fail_from: int | None, start_fails: bool
    ) -> None:
        self.topic = topic
        self.on_acks = on_acks
        self.fail_from = fail_from
        self.start_fails = start_fails
        self.batches = 0
        self.pending: list[tuple[Position, bytes, bytes, Headers]] = []
        self.scheduled = False

    @property
    def partitions(self) -> int:
        return PARTITIONS

    @property
    def uncommitted(self) -> bool:
        return bool(self.pending)

    @property
    def direct_add(self) -> Add:
        return self.add

    def add(self, position: Position, key: bytes, value: bytes, headers: Headers) -> None:
        self.pending.append((position, key, value, headers))
        if not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self._deliver)

    def _deliver(self) -> None:
        self.scheduled = False
        batch, self.pending = self.pending, []
        if not batch:
            return
        self.batches += 1
        if self.fail_from is not None and self.batches >= self.fail_from:
            self.on_acks([pos for pos, *_ in batch], KafkaConnectionError("broker went away"))
            return
        for record in batch:
            self.topic.partitions[self.topic.partitioner(record[1])].append(record)
        self.on_acks([pos for pos, *_ in batch], None)

    async def start(self) -> None:
        if self.start_fails:
            raise KafkaConnectionError("Unable to bootstrap from [('localhost', 9092)]")

    async def stop(self) -> None:
        pass

    async def commit(self) -> None:
        await self.flush()

    async def abort(self) -> None:
        pass

    async def flush(self) -> None:
        while self.pending or self.scheduled:
            await asyncio.sleep(0)

    def release(self) -> None:
        pass

    async def send(
        self, position: Position, key: bytes, value: bytes, headers: Headers, topic: str
    ) -> None:
        raise AssertionError("no dead letter expected")

    async def send_and_wait(self, topic: str, key: bytes, value: bytes, headers: Headers) -> None:
        raise AssertionError("no dead letter expected")


def test_a_session_survives_a_broker_outage_with_nothing_lost_or_doubled() -> None:
    server = Server()
    topic = Topic()
    config = ReaderConfig(
        dsn="postgresql://unused",
        kafka_bootstrap="unused:9092",
        partitions=PARTITIONS,
        status_interval=0.01,
        max_in_flight=8,  # backpressure on the way, too
        transactional=False,
    )
    stats = ReaderStats()
    # Session 1 loses the broker at its 4th batch; session 2 finds it still down at start;
    # session 3 works.
    plans = [(4, False), (None, True), (None, False)]
    ended: list[BaseException] = []

    async def run() -> None:
        for fail_from, start_fails in plans:
            stop = asyncio.Event()

            def producer(
                on_acks: AcksCallback,
                fail_from: int | None = fail_from,
                start_fails: bool = start_fails,
            ) -> RecordProducer:
                return Producer(topic, on_acks, fail_from=fail_from, start_fails=start_fails)

            state = SlotState(exists=True, confirmed_flush=server.confirmed)
            session = Session(
                config, stats, state, producer=producer, read_resume=topic.last_positions
            )
            try:
                await asyncio.wait_for(session.run(stop, Wire(server, stop)), 30)
            except (DeliveryError, KafkaConnectionError) as exc:
                ended.append(exc)
                continue
            return
        raise AssertionError(f"no session finished: {ended}")

    asyncio.run(run())

    # The reader retries both errors (replication.retry), and the sessions did end on them.
    assert [type(e) for e in ended] == [DeliveryError, KafkaConnectionError]
    assert all(classify(e).directive is Directive.RETRY for e in ended)
    assert "broker went away" in str(ended[0])
    # Nothing lost, nothing twice: every event is in the topic exactly once.
    delivered = [pos for records in topic.partitions for pos, *_ in records]
    expected = {
        Position(LSN(txn_lsns(t)[0]), i) for t in range(TRANSACTIONS) for i in range(EVENTS_PER_TXN)
    }
    assert len(delivered) == len(set(delivered))
    assert set(delivered) == expected
    # Each partition holds its events in stream order (the resume filter relies on it).
    for records in topic.partitions:
        positions = [pos for pos, *_ in records]
        assert positions == sorted(positions)
    # The slot was told a flush position that never went backwards (0/0 before the first
    # ack is no step back), ending at the last transaction's end; the first session,
    # which lost the broker, was never told the end.
    assert server.flushes == sorted(server.flushes)
    assert server.flushes[-1] == LSN(server.last_end)
    assert server.flushes[0] < LSN(server.last_end)
    assert stats.events_acked >= len(expected)


def test_every_record_carries_its_event_type_header_claim_checks_included() -> None:
    server = Server(large=frozenset({(3, 1), (17, 0)}))  # the session's large-row path
    topic = Topic()
    config = ReaderConfig(
        dsn="postgresql://unused",
        kafka_bootstrap="unused:9092",
        partitions=PARTITIONS,
        status_interval=0.01,
        transactional=False,
    )

    async def run() -> None:
        stop = asyncio.Event()

        def producer(on_acks: AcksCallback) -> RecordProducer:
            return Producer(topic, on_acks, fail_from=None, start_fails=False)

        state = SlotState(exists=True, confirmed_flush=server.confirmed)
        session = Session(
            config, ReaderStats(), state, producer=producer, read_resume=topic.last_positions
        )
        await asyncio.wait_for(session.run(stop, Wire(server, stop)), 30)

    asyncio.run(run())
    records = {
        pos: (value, headers) for part in topic.partitions for pos, _, value, headers in part
    }
    assert len(records) == TRANSACTIONS * EVENTS_PER_TXN
    claim_checked = []
    for t in range(TRANSACTIONS):
        for i in range(EVENTS_PER_TXN):
            value, headers = records[Position(LSN(txn_lsns(t)[0]), i)]
            assert dict(headers)["event_type"] == event_type(t, i).encode()
            assert orjson.loads(value)["event_type"] == event_type(t, i)
            if CLAIM_CHECK_HEADER in headers:
                claim_checked.append((t, i))
    assert claim_checked == sorted(server.large)


def test_the_reader_retries_a_broker_outage_at_session_start() -> None:
    """Reader.run follows replication.retry: a KafkaError raised as a session starts (the
    broker down when the producer starts) is retried, not raised out of ``pipeline run``."""
    from replication.reader import Reader

    server = Server()
    topic = Topic()
    config = ReaderConfig(
        dsn="postgresql://unused",
        kafka_bootstrap="unused:9092",
        partitions=PARTITIONS,
        status_interval=0.01,
        transactional=False,
        retry_min=0.01,
        retry_max=0.02,
    )
    start_fails = [True, True, False]  # the broker is down for the first two starts

    class StandInReader(Reader):
        async def session(self, stop: asyncio.Event) -> None:
            fails = start_fails.pop(0)

            def producer(on_acks: AcksCallback) -> RecordProducer:
                return Producer(topic, on_acks, fail_from=None, start_fails=fails)

            state = SlotState(exists=True, confirmed_flush=server.confirmed)
            session = Session(
                self.config, self.stats, state, producer=producer, read_resume=topic.last_positions
            )
            await session.run(stop, Wire(server, stop))

    reader = StandInReader(config)
    asyncio.run(asyncio.wait_for(reader.run(asyncio.Event()), 30))

    assert start_fails == []
    assert reader.stats.sessions == 3
    delivered = [pos for records in topic.partitions for pos, *_ in records]
    assert len(delivered) == len(set(delivered)) == TRANSACTIONS * EVENTS_PER_TXN
    assert server.flushes == sorted(server.flushes)
    assert server.flushes[-1] == LSN(server.last_end)
