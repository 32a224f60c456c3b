"""The Kafka side of the reader: an idempotent producer whose acks feed the flush tracker."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, TopicAlreadyExistsError

from replication.batcher import PartitionBatcher
from replication.kafka_client import PLAINTEXT, KafkaSecurity, client_options
from replication.lsn import Position

log = logging.getLogger(__name__)

# Events up to this size go through; the topic is created to accept them.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """The topic the reader produces to; created with these settings when missing."""

    name: str
    partitions: int
    replication_factor: int = 1
    # Retention -1: the topic is the log `pipeline replay` re-reads (DESIGN invariant 5).
    retention_ms: int = -1


async def ensure_topic(bootstrap: str, spec: TopicSpec, security: KafkaSecurity = PLAINTEXT) -> int:
    """Create the topic if missing; returns its partition count."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_options(security))
    await admin.start()
    try:
        try:
            await admin.create_topics(
                [
                    NewTopic(
                        spec.name,
                        num_partitions=spec.partitions,
                        replication_factor=spec.replication_factor,
                        topic_configs={
                            "retention.ms": str(spec.retention_ms),
                            "max.message.bytes": str(MAX_MESSAGE_BYTES),
                        },
                    )
                ]
            )
            log.info("created topic %s with %d partitions", spec.name, spec.partitions)
        except TopicAlreadyExistsError:
            pass
        described = await admin.describe_topics([spec.name])
        partitions = len(described[0]["partitions"])
        if partitions != spec.partitions:
            log.warning(
                "topic %s has %d partitions, configured %d: keeping the topic's",
                spec.name,
                partitions,
                spec.partitions,
            )
        return partitions
    finally:
        await admin.close()


Headers = list[tuple[str, bytes]]
AcksCallback = Callable[[list[Position], BaseException | None], None]


class EventProducer:
    """Idempotent, acks=all producer; every delivery report calls ``on_acks(positions, error)``.

    Events for the main topic are batched per partition (:class:`PartitionBatcher`:
    ``add`` never waits, one future per record batch); events for other topics (the
    dead-letter topic) go through ``send``, one by one.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        on_acks: AcksCallback,
        *,
        linger: float = 0.0,
        security: KafkaSecurity = PLAINTEXT,
    ) -> None:
        self.topic = topic
        self._on_acks = on_acks
        self._linger = linger
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            enable_idempotence=True,  # retries never duplicate or reorder within a partition
            acks="all",
            linger_ms=5,
            max_batch_size=1024 * 1024,
            max_request_size=MAX_MESSAGE_BYTES,
            request_timeout_ms=30000,
            **client_options(security),
        )
        self._batcher: PartitionBatcher | None = None

    async def start(self) -> None:
        """Connect, and learn the topic's partition count (fixed for this producer's life)."""
        await self._producer.start()
        partitions = len(await self._producer.partitions_for(self.topic))
        self._batcher = PartitionBatcher(
            self._producer,
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
            fut = await self._producer.send(topic, value=value, key=key, headers=headers)
        except (KafkaError, ValueError) as exc:
            self._on_acks([position], exc)
            return
        fut.add_done_callback(lambda f: self._report(position, f))

    def _report(self, position: Position, fut: asyncio.Future[object]) -> None:
        if fut.cancelled():
            self._on_acks([position], asyncio.CancelledError())
            return
        self._on_acks([position], fut.exception())


def is_too_large(error: BaseException) -> bool:
    """An event Kafka will never accept, however often it is retried."""
    return isinstance(error, MessageSizeTooLargeError)
