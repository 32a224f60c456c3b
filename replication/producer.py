"""The Kafka side of the reader: an idempotent producer whose acks feed the flush tracker."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, TopicAlreadyExistsError

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


async def ensure_topic(bootstrap: str, spec: TopicSpec) -> int:
    """Create the topic if missing; returns its partition count."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
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
AckCallback = Callable[[Position, BaseException | None], None]


class EventProducer:
    """Pipelined sends; each delivery report calls ``on_ack(position, error)``."""

    def __init__(self, bootstrap: str, topic: str, on_ack: AckCallback) -> None:
        self.topic = topic
        self._on_ack = on_ack
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            enable_idempotence=True,  # retries never duplicate or reorder within a partition
            acks="all",
            linger_ms=5,
            max_batch_size=1024 * 1024,
            max_request_size=MAX_MESSAGE_BYTES,
            request_timeout_ms=30000,
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def flush(self) -> None:
        await self._producer.flush()

    async def send(
        self,
        position: Position,
        key: bytes,
        value: bytes,
        headers: Headers,
        topic: str | None = None,
    ) -> None:
        """Queue one event; returns once it is in the producer's buffer (backpressure)."""
        try:
            fut = await self._producer.send(
                topic or self.topic, value=value, key=key, headers=headers
            )
        except (KafkaError, ValueError) as exc:
            self._on_ack(position, exc)
            return
        fut.add_done_callback(lambda f: self._report(position, f))

    def _report(self, position: Position, fut: asyncio.Future[object]) -> None:
        if fut.cancelled():
            self._on_ack(position, asyncio.CancelledError())
            return
        self._on_ack(position, fut.exception())


def is_too_large(error: BaseException) -> bool:
    """An event Kafka will never accept, however often it is retried."""
    return isinstance(error, MessageSizeTooLargeError)
