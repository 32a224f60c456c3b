"""Events grouped per partition into Kafka record batches, handed to aiokafka whole.

``AIOKafkaProducer.send`` costs tens of microseconds per event in Python (partitioner,
accumulator, a future per event and its callback), more than decoding the event. Here
the reader appends each event to the open record batch of its partition (one C call)
and a task per partition hands closed batches to ``send_batch``: one future per batch,
whose outcome is fanned out to every position in it.

What does not change:

- Partitioning is Kafka's default (``replication.partitioner``): same key, same
  partition (DESIGN invariant 4).
- Order: one task per partition hands its batches over in the order they were filled,
  and aiokafka's accumulator keeps them in that order; idempotence (sequence numbers
  per batch, set when the sender drains it) applies to ``send_batch`` exactly as to
  ``send``, so retries never duplicate or reorder.
- Acks: a position is reported acked only when Kafka acknowledged the batch holding it
  (acks=all); a failed batch reports every position in it failed (DESIGN invariant 2).

Batches are as large as the traffic makes them: a partition's task takes whatever
its open batch holds as soon as the previous batch has been handed over (aiokafka
keeps at most one batch per partition queued behind the one in flight), so a busy
stream gets big batches and a quiet one is not delayed by a linger.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Protocol

from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from replication.lsn import Position
from replication.partitioner import KeyPartitioner

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]
AcksCallback = Callable[[list[Position], BaseException | None], None]


class RecordBatch(Protocol):
    """What the batcher uses of aiokafka's ``BatchBuilder``."""

    def append(
        self, *, timestamp: int | None, key: bytes | None, value: bytes | None, headers: Headers
    ) -> object | None: ...

    def close(self) -> None: ...


class BatchProducer(Protocol):
    """What the batcher uses of ``AIOKafkaProducer``."""

    def create_batch(self) -> RecordBatch: ...

    async def send_batch(
        self, batch: RecordBatch, topic: str, *, partition: int
    ) -> asyncio.Future[object]: ...


class _Lane:
    """One partition: the open batch, batches already full, and the task handing them over."""

    __slots__ = ("batch", "full", "idle", "positions", "task", "wake")

    def __init__(self) -> None:
        self.batch: RecordBatch | None = None
        self.positions: list[Position] = []
        self.full: deque[tuple[RecordBatch, list[Position]]] = deque()
        self.wake = asyncio.Event()
        self.idle = asyncio.Event()
        self.idle.set()
        self.task: asyncio.Task[None] | None = None

    def take(self) -> tuple[RecordBatch, list[Position]] | None:
        if self.full:
            return self.full.popleft()
        batch = self.batch
        if batch is None:
            return None
        positions = self.positions
        self.batch = None
        self.positions = []
        return batch, positions


class PartitionBatcher:
    """Per-partition record batches for one topic; ``on_acks`` hears every outcome.

    ``add`` never waits (the caller bounds what is in flight); :meth:`flush` hands over
    every open batch and waits until Kafka has answered for all of them.
    """

    def __init__(
        self,
        producer: BatchProducer,
        topic: str,
        partitions: int,
        on_acks: AcksCallback,
        *,
        max_message_bytes: int,
    ) -> None:
        self.topic = topic
        self.partitions = partitions
        self._producer = producer
        self._on_acks = on_acks
        self._partition = KeyPartitioner(partitions)
        self._lanes = [_Lane() for _ in range(partitions)]
        self._max_message_bytes = max_message_bytes
        # Below this, key + value + our few small headers cannot reach the limit.
        self._check_size_from = max_message_bytes // 2
        self._outstanding: set[asyncio.Future[object]] = set()

    def start(self) -> None:
        """Start one task per partition (call inside the event loop)."""
        for p, lane in enumerate(self._lanes):
            if lane.task is None:
                lane.task = asyncio.create_task(self._run(p, lane), name=f"batcher-{p}")

    async def close(self) -> None:
        """Stop the tasks; events not handed over yet are never reported (flush first)."""
        tasks = [lane.task for lane in self._lanes if lane.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for lane in self._lanes:
            lane.task = None

    def add(self, position: Position, key: bytes, value: bytes, headers: Headers) -> None:
        """Append one event to its partition's open batch."""
        if len(value) + len(key) >= self._check_size_from:
            size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers)
            if size > self._max_message_bytes:
                self._on_acks(
                    [position],
                    MessageSizeTooLargeError(
                        f"The message is {size} bytes when serialized, more than the "
                        f"{self._max_message_bytes} bytes the topic accepts"
                    ),
                )
                return
        lane = self._lanes[self._partition(key)]
        batch = lane.batch
        if batch is None:
            batch = lane.batch = self._producer.create_batch()
            lane.idle.clear()
            lane.wake.set()
        if batch.append(timestamp=None, key=key, value=value, headers=headers) is None:
            # Full: queue it and start another (a batch always takes its first record).
            lane.full.append((batch, lane.positions))
            batch = lane.batch = self._producer.create_batch()
            lane.positions = []
            batch.append(timestamp=None, key=key, value=value, headers=headers)
        lane.positions.append(position)

    @property
    def buffered(self) -> int:
        """Events appended but not handed over to the producer yet."""
        return sum(len(lane.positions) + sum(len(p) for _, p in lane.full) for lane in self._lanes)

    async def flush(self) -> None:
        """Hand over every batch and wait until Kafka has answered for each of them."""
        for lane in self._lanes:
            if not lane.idle.is_set():
                lane.wake.set()
        for lane in self._lanes:
            await lane.idle.wait()
        if self._outstanding:
            await asyncio.wait(list(self._outstanding))

    async def _run(self, partition: int, lane: _Lane) -> None:
        while True:
            await lane.wake.wait()
            lane.wake.clear()
            while (taken := lane.take()) is not None:
                await self._hand_over(partition, *taken)
            lane.idle.set()

    async def _hand_over(
        self, partition: int, batch: RecordBatch, positions: list[Position]
    ) -> None:
        batch.close()
        try:
            fut = await self._producer.send_batch(batch, self.topic, partition=partition)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # whatever stops the hand-over fails the batch, visibly
            log.warning(
                "could not hand %d event(s) for %s[%d] to the producer: %r",
                len(positions),
                self.topic,
                partition,
                exc,
            )
            self._on_acks(positions, exc)
            return
        self._outstanding.add(fut)
        fut.add_done_callback(lambda f: self._done(f, positions))

    def _done(self, fut: asyncio.Future[object], positions: list[Position]) -> None:
        self._outstanding.discard(fut)
        if fut.cancelled():
            self._on_acks(positions, asyncio.CancelledError())
            return
        self._on_acks(positions, fut.exception())
