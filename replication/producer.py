"""The Kafka side of the reader: a transactional producer whose acks feed the flush tracker.

Transactions fence a frozen former reader (DESIGN invariant 6): the producer's
transactional id is fixed per topic and slot, so a new reader's start bumps its epoch,
aborts whatever the old one left open, and any later write of the old one fails. Consumers
read with ``isolation_level=read_committed`` and never see an aborted record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from aiokafka.producer import sender as aiokafka_sender

from replication import killpoint
from replication.batcher import PartitionBatcher, RecordBatch
from replication.kafka_client import PLAINTEXT, KafkaSecurity, client_options
from replication.lsn import Position
from replication.topics import MAX_MESSAGE_BYTES as MAX_MESSAGE_BYTES  # noqa: PLC0414 (re-exported)

log = logging.getLogger(__name__)

# How long aiokafka waits before it asks again to add a partition to a transaction that the
# broker refused with CONCURRENT_TRANSACTIONS. The broker answers so while it still writes
# the previous transaction's commit markers, which the reader meets after most commits: it
# commits whenever it has caught up, and the next event comes right behind. aiokafka waits
# 20 ms there (``BACKOFF_OVERRIDE``, after KAFKA-5477; 100 ms for other retries); the markers
# of a local broker take a millisecond or two. At 20 bootstraps/s + 200 other events/s,
# 10-15 % of the reader's transactions met it, and commit -> Kafka append p95 was 31-38 ms
# with 20 ms against 10-15 ms with 2 ms in four alternating pairs (docs/benchmarks.md,
# issue 17, late night). A retry is one small request to the transaction coordinator.
CONCURRENT_TRANSACTIONS_BACKOFF_S = 0.002


def shorten_concurrent_transactions_backoff() -> None:
    """Set aiokafka's wait after CONCURRENT_TRANSACTIONS (module-wide: every transactional
    producer of the process) to :data:`CONCURRENT_TRANSACTIONS_BACKOFF_S`. An aiokafka
    without the setting keeps its own wait, with a warning (tests fail on it)."""
    if not hasattr(aiokafka_sender, "BACKOFF_OVERRIDE"):
        log.warning(
            "aiokafka.producer.sender has no BACKOFF_OVERRIDE: a transaction that follows a "
            "commit may wait aiokafka's own backoff before its first record"
        )
        return
    aiokafka_sender.BACKOFF_OVERRIDE = CONCURRENT_TRANSACTIONS_BACKOFF_S


# A transaction left open by a reader that died is aborted by the broker after this long
# (at once by the next reader's start). Also the bound on the initial snapshot, which is
# one transaction. The broker's default transaction.max.timeout.ms.
TRANSACTION_TIMEOUT_MS = 900_000


def transactional_id(topic: str, slot: str) -> str:
    """The reader's Kafka transactional id: one per topic and slot, stable across restarts."""
    return f"pipeline-reader.{topic}.{slot}"


Headers = list[tuple[str, bytes]]
AcksCallback = Callable[[list[Position], BaseException | None], None]


class _TransactionGate:
    """The producer as the batcher sees it: hand-overs wait while a transaction commits.

    aiokafka refuses a batch between ``commit_transaction`` and the next
    ``begin_transaction``; the batcher's task waits here instead, and the batch goes into
    the next transaction. ``busy`` counts hand-overs in progress, so a commit starts only
    once none is half-way into the producer.
    """

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self.open = asyncio.Event()
        self.open.set()
        self.busy = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.sent = 0  # batches and single records handed over since the last commit

    def create_batch(self) -> RecordBatch:
        batch: RecordBatch = self._producer.create_batch()
        return batch

    async def send_batch(
        self, batch: RecordBatch, topic: str, *, partition: int
    ) -> asyncio.Future[object]:
        async with self.passage():
            killpoint.reached("reader.before_produce")
            fut: asyncio.Future[object] = await self._producer.send_batch(
                batch, topic, partition=partition
            )
            return fut

    @contextlib.asynccontextmanager
    async def passage(self) -> AsyncIterator[None]:
        """Hold the gate open around one hand-over."""
        while not self.open.is_set():
            await self.open.wait()
        self.busy += 1
        self.idle.clear()
        try:
            yield
            self.sent += 1
        finally:
            self.busy -= 1
            if self.busy == 0:
                self.idle.set()


class EventProducer:
    """Transactional (or only idempotent), acks=all producer; every delivery report calls
    ``on_acks(positions, error)``.

    Events for the main topic are batched per partition (:class:`PartitionBatcher`:
    ``add`` never waits, one future per record batch); events for other topics (the
    dead-letter topic) go through ``send``, one by one. With a ``transactional_id``,
    acks mean "written", not "visible": an event is durable for consumers (and the
    slot) only once :meth:`commit` has returned after its ack.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        on_acks: AcksCallback,
        *,
        linger: float = 0.0,
        transactional_id: str | None = None,
        client_id: str | None = None,
        security: KafkaSecurity = PLAINTEXT,
    ) -> None:
        self.topic = topic
        self._on_acks = on_acks
        self._linger = linger
        self.transactional_id = transactional_id
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            client_id=client_id,
            enable_idempotence=True,  # retries never duplicate or reorder within a partition
            transactional_id=transactional_id,
            transaction_timeout_ms=TRANSACTION_TIMEOUT_MS,
            acks="all",
            linger_ms=5,
            max_batch_size=1024 * 1024,
            max_request_size=MAX_MESSAGE_BYTES,
            request_timeout_ms=30000,
            **client_options(security),
        )
        if transactional_id is not None:
            shorten_concurrent_transactions_backoff()
        self._gate = _TransactionGate(self._producer)
        self._batcher: PartitionBatcher | None = None
        self._in_transaction = False  # begun, and no commit started since

    async def start(self) -> None:
        """Connect, and learn the topic's partition count (fixed for this producer's life).

        With a transactional id, also fence every earlier producer of that id (the
        previous reader: its open transaction is aborted, its later writes refused) and
        open the first transaction.
        """
        await self._producer.start()
        if self.transactional_id is not None:
            await self._producer.begin_transaction()
            self._in_transaction = True
        partitions = len(await self._producer.partitions_for(self.topic))
        self._batcher = PartitionBatcher(
            self._gate,
            self.topic,
            partitions,
            self._on_acks,
            max_message_bytes=MAX_MESSAGE_BYTES,
            linger=self._linger,
        )
        self._batcher.start()

    async def stop(self) -> None:
        if self._batcher is not None:
            await self._batcher.close()
        await self._producer.stop()

    @property
    def partitions(self) -> int:
        """The main topic's partition count (once started)."""
        assert self._batcher is not None, "start() first"
        return self._batcher.partitions

    @property
    def uncommitted(self) -> bool:
        """Something was handed over or is buffered since the last :meth:`commit`."""
        if self._gate.sent:
            return True
        return self._batcher is not None and self._batcher.buffered > 0

    async def commit(self) -> None:
        """Make everything handed over so far visible to read_committed consumers (and
        open the next transaction). Events added meanwhile wait in their batches and go
        into the next transaction. Without a transactional id: :meth:`flush`."""
        if self.transactional_id is None:
            await self.flush()
            return
        gate = self._gate
        gate.open.clear()
        try:
            await gate.idle.wait()
            gate.sent = 0
            self._in_transaction = False
            await self._producer.commit_transaction()  # flushes what was handed over
            await self._producer.begin_transaction()
            self._in_transaction = True
        finally:
            gate.open.set()

    async def abort(self) -> None:
        """Abort the open transaction (a failed session): nothing of it becomes visible."""
        if self.transactional_id is not None and self._in_transaction:
            self._gate.open.clear()
            self._in_transaction = False
            await self._producer.abort_transaction()

    async def flush(self) -> None:
        """Wait until Kafka has answered for every event added or sent so far."""
        if self._batcher is not None:
            await self._batcher.flush()
        await self._producer.flush()

    def release(self) -> None:
        """Hand over the batches held back by ``linger`` (the caller has caught up)."""
        if self._batcher is not None:
            self._batcher.release()

    def add(self, position: Position, key: bytes, value: bytes, headers: Headers) -> None:
        """Queue one event for the main topic (its partition's open record batch)."""
        assert self._batcher is not None, "start() first"
        self._batcher.add(position, key, value, headers)

    @property
    def direct_add(self) -> Callable[[Position, bytes, bytes, Headers], None]:
        """:meth:`add` without this wrapper's call (the batcher's own), once started."""
        assert self._batcher is not None, "start() first"
        return self._batcher.add

    async def send(
        self,
        position: Position,
        key: bytes,
        value: bytes,
        headers: Headers,
        topic: str,
    ) -> None:
        """Queue one event for ``topic``; returns once it is in the producer's buffer."""
        try:
            async with self._gate.passage():
                fut = await self._producer.send(topic, value=value, key=key, headers=headers)
        except (KafkaError, ValueError) as exc:
            self._on_acks([position], exc)
            return
        fut.add_done_callback(lambda f: self._report(position, f))

    async def send_and_wait(self, topic: str, key: bytes, value: bytes, headers: Headers) -> None:
        """Send one record to ``topic`` and wait for Kafka's answer; raises its error.
        For the rare dead letter: it does not go through ``on_acks``, the caller decides
        what a failure means (and bounds the wait). Like every hand-over, it waits while a
        transaction commits (aiokafka refuses a send between commit and the next begin)."""
        async with self._gate.passage():
            fut = await self._producer.send(topic, value=value, key=key, headers=headers)
        await fut

    def _report(self, position: Position, fut: asyncio.Future[object]) -> None:
        if fut.cancelled():
            self._on_acks([position], asyncio.CancelledError())
            return
        self._on_acks([position], fut.exception())


def is_too_large(error: BaseException) -> bool:
    """An event Kafka will never accept, however often it is retried."""
    return isinstance(error, MessageSizeTooLargeError)
