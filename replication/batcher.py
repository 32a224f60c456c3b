"""Events grouped per partition into Kafka record batches, handed to aiokafka whole.

``AIOKafkaProducer.send`` costs tens of microseconds per event in Python (partitioner,
accumulator, a future per event and its callback), more than decoding the event. Here
the reader appends each event to the open record batch of its partition (one C call)
and a task hands closed batches to ``send_batch``: one future per batch,
whose outcome is fanned out to every position in it.

What does not change:

- Partitioning is Kafka's default (``replication.partitioner``): same key, same
  partition (DESIGN invariant 4).
- Order: a partition's batches are handed over one at a time in the order they were
  filled, each after Kafka answered for the previous one; idempotence (sequence numbers
  per batch, set when the sender drains it) applies to ``send_batch`` exactly as to
  ``send``, so retries never duplicate or reorder.
- Acks: a position is reported acked only when Kafka acknowledged the batch holding it
  (acks=all); a failed batch reports every position in it failed (DESIGN invariant 2).

Batches are as large as the traffic makes them: a partition's open batch is handed
over as soon as Kafka answered for its previous one, so under load a batch holds
everything that arrived during one round trip, and a quiet stream is not delayed.

With ``linger > 0`` (the reader's setting) an open batch is also held back while the
caller still has events to add: until it holds ``linger_records`` events, is ``linger``
seconds old, or the caller calls :meth:`PartitionBatcher.release` (the reader does when
its socket is empty, i.e. it has caught up). Each batch costs aiokafka a fixed amount of
CPU (request, futures, response) whatever its size, and a reader draining a backlog
otherwise sends batches of one round trip's worth: holding them until the reader catches
up or they fill makes them an order of magnitude larger and the reader's CPU per event
smaller (figures: docs/benchmarks.md, "Figures the code used to quote"). An event that
arrives when the reader has nothing else to do is handed over at once, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
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
    """One partition: its open batch, batches already full, and the one handed over."""

    __slots__ = ("batch", "failed", "full", "opened", "outstanding", "positions")

    def __init__(self) -> None:
        self.batch: RecordBatch | None = None
        self.opened = 0.0  # when the open batch got its first event (time.monotonic)
        self.positions: list[Position] = []
        self.full: deque[tuple[RecordBatch, list[Position]]] = deque()
        # The batch handed to the producer and not answered yet: at most one, so the
        # next batch grows while Kafka works on this one.
        self.outstanding: asyncio.Future[object] | None = None
        self.failed: BaseException | None = None

    def waiting(self) -> bool:
        return self.batch is not None or bool(self.full)

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

    One task hands batches over. A partition has at most one batch handed over and
    unanswered; its next batch is handed over when the answer comes, together with
    whatever other partitions have ready, so one produce request carries them all.
    After a batch of a partition failed, later batches of that partition are not sent
    (they are reported failed too): nothing lands behind a gap in a stream's order.
    """

    def __init__(
        self,
        producer: BatchProducer,
        topic: str,
        partitions: int,
        on_acks: AcksCallback,
        *,
        max_message_bytes: int,
        linger: float = 0.0,
        linger_records: int = 1000,
    ) -> None:
        self.topic = topic
        self.linger = linger
        self.linger_records = linger_records
        # Set by release() (and flush()); cleared by the next add(): while set, open
        # batches are handed over whatever their size and age.
        self._released = linger <= 0
        self.partitions = partitions
        self._producer = producer
        self._on_acks = on_acks
        self._partition = KeyPartitioner(partitions)
        self._lanes = [_Lane() for _ in range(partitions)]
        self._max_message_bytes = max_message_bytes
        # Below this, key + value + our few small headers cannot reach the limit.
        self._check_size_from = max_message_bytes // 2
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the hand-over task (call inside the event loop)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"batcher-{self.topic}")

    async def close(self) -> None:
        """Stop the task; events not handed over yet are never reported (flush first)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

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
        if self.linger > 0:
            self._released = False
        batch = lane.batch
        if batch is None:
            batch = lane.batch = self._producer.create_batch()
            lane.opened = time.monotonic()
            if lane.outstanding is None:
                self._wake.set()
        if batch.append(timestamp=None, key=key, value=value, headers=headers) is None:
            # Full: queue it and start another (a batch always takes its first record).
            lane.full.append((batch, lane.positions))
            batch = lane.batch = self._producer.create_batch()
            lane.opened = time.monotonic()
            lane.positions = []
            batch.append(timestamp=None, key=key, value=value, headers=headers)
            self._wake.set()
        positions = lane.positions
        positions.append(position)
        if len(positions) == self.linger_records:
            self._wake.set()

    def release(self) -> None:
        """Hand over every open batch now: the caller has nothing more to add for the
        moment (see the module docstring). Holding resumes with the next :meth:`add`."""
        if not self._released:
            self._released = True
            self._wake.set()

    @property
    def buffered(self) -> int:
        """Events appended but not handed over to the producer yet."""
        return sum(len(lane.positions) + sum(len(p) for _, p in lane.full) for lane in self._lanes)

    async def flush(self) -> None:
        """Hand over every batch and wait until Kafka has answered for each of them."""
        while any(lane.waiting() or lane.outstanding is not None for lane in self._lanes):
            self._progress.clear()
            self._released = True
            self._wake.set()
            await self._progress.wait()

    def _due(self, lane: _Lane, now: float) -> float:
        """Seconds until ``lane`` may hand over what it holds (0: now)."""
        if lane.full or self._released or len(lane.positions) >= self.linger_records:
            return 0.0
        return max(0.0, lane.opened + self.linger - now)

    async def _run(self) -> None:
        wait: float | None = None
        while True:
            if wait is None:
                await self._wake.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
            self._wake.clear()
            wait = None
            now = time.monotonic()
            for partition, lane in enumerate(self._lanes):
                if lane.outstanding is not None or not lane.waiting():
                    continue
                due = self._due(lane, now)
                if due > 0:
                    wait = due if wait is None else min(wait, due)
                elif (taken := lane.take()) is not None:
                    await self._hand_over(partition, lane, *taken)
                    self._progress.set()

    async def _hand_over(
        self, partition: int, lane: _Lane, batch: RecordBatch, positions: list[Position]
    ) -> None:
        batch.close()
        if lane.failed is not None:
            self._on_acks(positions, lane.failed)
            return
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
            lane.failed = exc
            self._on_acks(positions, exc)
            return
        lane.outstanding = fut
        fut.add_done_callback(lambda f: self._done(f, lane, positions))

    def _done(self, fut: asyncio.Future[object], lane: _Lane, positions: list[Position]) -> None:
        lane.outstanding = None
        if fut.cancelled():
            error: BaseException | None = asyncio.CancelledError()
        else:
            error = fut.exception()
        if error is not None and lane.failed is None:
            lane.failed = error
        self._on_acks(positions, error)
        if lane.waiting():
            self._wake.set()
        self._progress.set()
