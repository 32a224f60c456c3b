"""Per-partition batching (batcher.py) against a stand-in producer: order, acks, failures.

The real aiokafka path (idempotent producer, real broker) is covered by
tests/integration/test_batcher.py and by the reader's own integration and crash tests.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

from replication.batcher import Headers, PartitionBatcher, RecordBatch
from replication.lsn import LSN, Position
from replication.partitioner import partition_for

PARTITIONS = 4


@dataclass
class FakeBatch:
    capacity: int
    records: list[tuple[bytes, bytes, Headers]] = field(default_factory=list)
    closed: bool = False

    def append(
        self, *, timestamp: int | None, key: bytes | None, value: bytes | None, headers: Headers
    ) -> object | None:
        assert not self.closed
        assert key is not None and value is not None
        if len(self.records) >= self.capacity:
            return None
        self.records.append((key, value, headers))
        return object()

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeProducer:
    capacity: int = 3
    fail_hand_over: BaseException | None = None
    sent: list[tuple[int, FakeBatch, asyncio.Future[object]]] = field(default_factory=list)

    def create_batch(self) -> FakeBatch:
        return FakeBatch(self.capacity)

    async def send_batch(
        self, batch: RecordBatch, topic: str, *, partition: int
    ) -> asyncio.Future[object]:
        assert isinstance(batch, FakeBatch) and batch.closed
        if self.fail_hand_over is not None:
            raise self.fail_hand_over
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self.sent.append((partition, batch, fut))
        return fut

    def ack_all(self) -> None:
        for _, _, fut in self.sent:
            if not fut.done():
                fut.set_result(None)


@dataclass
class Acks:
    reports: list[tuple[list[Position], BaseException | None]] = field(default_factory=list)

    def __call__(self, positions: list[Position], error: BaseException | None) -> None:
        self.reports.append((list(positions), error))

    def acked(self) -> list[Position]:
        return [p for ps, err in self.reports if err is None for p in ps]

    def failed(self) -> list[Position]:
        return [p for ps, err in self.reports if err is not None for p in ps]


def pos(i: int) -> Position:
    return Position(LSN(1000 + i), 0)


KEYS = [f"stream-{k}".encode() for k in range(10)]


async def _run(producer: FakeProducer, acks: Acks, **kw: int) -> PartitionBatcher:
    batcher = PartitionBatcher(
        producer, "events", PARTITIONS, acks, max_message_bytes=kw.get("max", 1 << 20)
    )
    batcher.start()
    return batcher


async def test_each_key_keeps_its_partition_and_its_order() -> None:
    producer, acks = FakeProducer(capacity=3), Acks()
    batcher = await _run(producer, acks)
    for i in range(100):
        key = KEYS[i % len(KEYS)]
        batcher.add(pos(i), key, b"%d" % i, [("idx", b"0")])
    flushing = asyncio.create_task(batcher.flush())
    await asyncio.sleep(0)
    assert not flushing.done()  # flush waits for Kafka's answers
    while not flushing.done():
        producer.ack_all()
        await asyncio.sleep(0)
    await batcher.close()

    seen: dict[bytes, list[int]] = {}
    for partition, batch, _ in producer.sent:
        assert len(batch.records) <= 3
        for key, value, _ in batch.records:
            assert partition == partition_for(key, PARTITIONS)
            seen.setdefault(key, []).append(int(value))
    for key, values in seen.items():
        assert values == sorted(values), key
    assert sum(len(v) for v in seen.values()) == 100
    assert sorted(acks.acked()) == [pos(i) for i in range(100)]
    assert not acks.failed()


async def test_acks_wait_for_the_batch_and_a_failed_batch_fails_all_its_events() -> None:
    producer, acks = FakeProducer(capacity=100), Acks()
    batcher = await _run(producer, acks)
    key = KEYS[0]
    for i in range(5):
        batcher.add(pos(i), key, b"v", [])
    while not producer.sent:
        await asyncio.sleep(0)
    assert acks.reports == []  # handed over, not acknowledged: nothing reported
    (_, batch, fut) = producer.sent[0]
    fut.set_exception(KafkaTimeoutError())
    await asyncio.sleep(0)
    assert acks.failed() == [pos(i) for i in range(len(batch.records))]
    await batcher.close()


async def test_the_next_batch_grows_while_kafka_answers_for_the_previous_one() -> None:
    producer, acks = FakeProducer(capacity=1000), Acks()
    batcher = await _run(producer, acks)
    key = KEYS[1]
    batcher.add(pos(0), key, b"0", [])
    while not producer.sent:
        await asyncio.sleep(0)
    for i in range(1, 50):
        batcher.add(pos(i), key, b"%d" % i, [])
    for _ in range(10):
        await asyncio.sleep(0)
    assert len(producer.sent) == 1  # one batch per partition awaits Kafka's answer
    assert batcher.buffered == 49
    flushing = asyncio.create_task(batcher.flush())
    producer.ack_all()
    while len(producer.sent) < 2:
        await asyncio.sleep(0)
    assert [len(b.records) for _, b, _ in producer.sent] == [1, 49]
    producer.ack_all()
    await asyncio.wait_for(flushing, 5)
    assert sorted(acks.acked()) == [pos(i) for i in range(50)]
    await batcher.close()


async def test_one_round_hands_over_every_partition() -> None:
    producer, acks = FakeProducer(capacity=1000), Acks()
    batcher = await _run(producer, acks)
    for i, key in enumerate(KEYS):
        batcher.add(pos(i), key, b"v", [])
    await asyncio.sleep(0)
    partitions = {partition_for(k, PARTITIONS) for k in KEYS}
    assert sorted(p for p, _, _ in producer.sent) == sorted(partitions)
    producer.ack_all()
    await asyncio.wait_for(batcher.flush(), 5)
    await batcher.close()


async def test_after_a_failed_batch_the_partition_sends_nothing_more() -> None:
    producer, acks = FakeProducer(capacity=1000), Acks()
    batcher = await _run(producer, acks)
    key = KEYS[2]
    batcher.add(pos(0), key, b"0", [])
    while not producer.sent:
        await asyncio.sleep(0)
    batcher.add(pos(1), key, b"1", [])
    other = next(k for k in KEYS if partition_for(k, PARTITIONS) != partition_for(key, PARTITIONS))
    batcher.add(pos(2), other, b"2", [])
    producer.sent[0][2].set_exception(KafkaTimeoutError())
    flushing = asyncio.create_task(batcher.flush())
    while len(producer.sent) < 2:
        await asyncio.sleep(0)
    producer.ack_all()
    await asyncio.wait_for(flushing, 5)
    assert sorted(acks.failed()) == [pos(0), pos(1)]  # pos(1) was never sent
    assert acks.acked() == [pos(2)]  # other partitions go on
    assert [len(b.records) for _, b, _ in producer.sent] == [1, 1]
    await batcher.close()


async def test_a_hand_over_that_fails_reports_its_events() -> None:
    producer, acks = FakeProducer(), Acks()
    producer.fail_hand_over = KafkaTimeoutError()
    batcher = await _run(producer, acks)
    batcher.add(pos(0), KEYS[0], b"v", [])
    await asyncio.wait_for(batcher.flush(), 5)
    assert acks.failed() == [pos(0)]
    assert isinstance(acks.reports[0][1], KafkaTimeoutError)
    await batcher.close()


async def test_an_event_larger_than_the_topic_accepts_fails_alone() -> None:
    producer, acks = FakeProducer(), Acks()
    batcher = await _run(producer, acks, max=1000)
    batcher.add(pos(0), KEYS[0], b"x" * 2000, [])
    batcher.add(pos(1), KEYS[0], b"x" * 100, [])
    assert acks.failed() == [pos(0)]
    assert isinstance(acks.reports[0][1], MessageSizeTooLargeError)
    flushing = asyncio.create_task(batcher.flush())
    while not producer.sent:
        await asyncio.sleep(0)
    producer.ack_all()
    await asyncio.wait_for(flushing, 5)
    assert acks.acked() == [pos(1)]
    await batcher.close()


@pytest.mark.parametrize("events", [0, 1])
async def test_flush_with_little_or_nothing_buffered_returns(events: int) -> None:
    producer, acks = FakeProducer(), Acks()
    batcher = await _run(producer, acks)
    for i in range(events):
        batcher.add(pos(i), KEYS[0], b"v", [])
    flushing = asyncio.create_task(batcher.flush())
    for _ in range(10):
        await asyncio.sleep(0)
    producer.ack_all()
    await asyncio.wait_for(flushing, 5)
    assert len(acks.acked()) == events
    await batcher.close()


# -- linger: held back while the caller has more to add -----------------------------------


def _lingering(
    producer: FakeProducer, acks: Acks, *, linger: float = 60.0, records: int = 1000
) -> PartitionBatcher:
    batcher = PartitionBatcher(
        producer,
        "events",
        PARTITIONS,
        acks,
        max_message_bytes=1 << 20,
        linger=linger,
        linger_records=records,
    )
    batcher.start()
    return batcher


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_with_linger_an_open_batch_waits_until_released() -> None:
    producer, acks = FakeProducer(capacity=1000), Acks()
    batcher = _lingering(producer, acks)
    for i in range(5):
        batcher.add(pos(i), KEYS[0], b"v", [])
    await _settle()
    assert producer.sent == []  # the caller may still add: held back
    batcher.release()
    await _settle()
    assert [len(b.records) for _, b, _ in producer.sent] == [5]
    producer.ack_all()
    await asyncio.wait_for(batcher.flush(), 5)
    assert sorted(acks.acked()) == [pos(i) for i in range(5)]
    await batcher.close()


async def test_release_lasts_until_the_next_add() -> None:
    producer, acks = FakeProducer(capacity=1000), Acks()
    batcher = _lingering(producer, acks)
    batcher.add(pos(0), KEYS[0], b"v", [])
    batcher.release()
    await _settle()
    assert len(producer.sent) == 1
    batcher.add(pos(1), KEYS[0], b"v", [])  # behind again: held while the first is answered
    producer.ack_all()
    await _settle()
    assert len(producer.sent) == 1
    batcher.release()
    await _settle()
    assert [len(b.records) for _, b, _ in producer.sent] == [1, 1]
    producer.ack_all()
    await asyncio.wait_for(batcher.flush(), 5)
    await batcher.close()


async def test_with_linger_a_batch_goes_when_it_holds_enough_events() -> None:
    producer, acks = FakeProducer(capacity=1000), Acks()
    batcher = _lingering(producer, acks, records=10)
    for i in range(9):
        batcher.add(pos(i), KEYS[0], b"v", [])
    await _settle()
    assert producer.sent == []
    batcher.add(pos(9), KEYS[0], b"v", [])
    await _settle()
    assert [len(b.records) for _, b, _ in producer.sent] == [10]
    producer.ack_all()
    await asyncio.wait_for(batcher.flush(), 5)
    await batcher.close()


async def test_with_linger_a_full_batch_goes_at_once() -> None:
    producer, acks = FakeProducer(capacity=3), Acks()
    batcher = _lingering(producer, acks)
    for i in range(4):
        batcher.add(pos(i), KEYS[0], b"v", [])
    await _settle()
    assert [len(b.records) for _, b, _ in producer.sent] == [3]  # the 4th is held
    flushing = asyncio.create_task(batcher.flush())
    while not flushing.done():
        producer.ack_all()
        await asyncio.sleep(0)
    assert [len(b.records) for _, b, _ in producer.sent] == [3, 1]
    assert sorted(acks.acked()) == [pos(i) for i in range(4)]
    await batcher.close()


async def test_with_linger_a_batch_goes_when_it_is_old_enough() -> None:
    producer, acks = FakeProducer(capacity=1000), Acks()
    batcher = _lingering(producer, acks, linger=0.05)
    batcher.add(pos(0), KEYS[0], b"v", [])
    await _settle()
    assert producer.sent == []
    await asyncio.sleep(0.1)
    assert [len(b.records) for _, b, _ in producer.sent] == [1]
    producer.ack_all()
    await asyncio.wait_for(batcher.flush(), 5)
    await batcher.close()


async def test_flush_hands_over_what_linger_holds() -> None:
    producer, acks = FakeProducer(capacity=1000), Acks()
    batcher = _lingering(producer, acks)
    batcher.add(pos(0), KEYS[0], b"v", [])
    flushing = asyncio.create_task(batcher.flush())
    while not producer.sent:
        await asyncio.sleep(0)
    producer.ack_all()
    await asyncio.wait_for(flushing, 5)
    assert acks.acked() == [pos(0)]
    await batcher.close()
