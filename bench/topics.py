"""Kafka side of the benchmark: the source topic with broker-side timestamps, reading it
back, and cleaning up.

The topic is created before ``pipeline run`` starts (the pipeline keeps an existing topic)
with ``message.timestamp.type=LogAppendTime``, so each record's timestamp is the moment
the broker appended it, not the producer's clock at send time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import TopicPartition


@dataclass(frozen=True, slots=True)
class Appended:
    """One record of the source topic: the event, its WAL commit time, its append time."""

    event_id: str
    event_type: str
    committed: float
    appended: float


@asynccontextmanager
async def _admin(bootstrap: str) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    async with _admin(bootstrap) as admin:
        await admin.create_topics(
            [
                NewTopic(
                    name,
                    num_partitions=partitions,
                    replication_factor=1,
                    topic_configs={"message.timestamp.type": "LogAppendTime", "retention.ms": "-1"},
                )
            ]
        )


async def delete_topics(bootstrap: str, prefix: str) -> None:
    """Delete every topic whose name starts with ``prefix`` (ours, its DLQ, Faust's)."""
    async with _admin(bootstrap) as admin:
        names = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if names:
            await admin.delete_topics(names)


async def partition_count(bootstrap: str, topic: str) -> int:
    async with _admin(bootstrap) as admin:
        (meta,) = await admin.describe_topics([topic])
        return len(meta["partitions"])


async def end_offsets_total(consumer: AIOKafkaConsumer, topic: str, partitions: int) -> int:
    # The consumer is not subscribed, so its metadata does not list the topic: name the
    # partitions instead of asking partitions_for_topic (which would answer None).
    parts = [TopicPartition(topic, p) for p in range(partitions)]
    ends = await consumer.end_offsets(parts)
    return int(sum(ends.values()))


async def read_all(bootstrap: str, topic: str) -> list[Appended]:
    """Every record of ``topic`` from the beginning to the current end."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    out: list[Appended] = []
    try:
        parts = [TopicPartition(topic, p) for p in range(await partition_count(bootstrap, topic))]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        remaining = {tp for tp in parts if ends[tp] > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000, max_records=10000)
            for records in batch.values():
                for rec in records:
                    headers = dict(rec.headers)
                    value = orjson.loads(rec.value) if rec.value else {}
                    out.append(
                        Appended(
                            event_id=str(value.get("id")),
                            event_type=str(value.get("event_type")),
                            committed=datetime.fromisoformat(
                                headers["commit_ts"].decode()
                            ).timestamp(),
                            appended=rec.timestamp / 1000.0,
                        )
                    )
            # The position, not the last record: a commit marker may end the partition.
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return out


@dataclass(frozen=True, slots=True)
class Span:
    """How many records a topic holds and when the broker appended the first and last."""

    records: int
    first_appended: float
    last_appended: float


async def span(bootstrap: str, topic: str) -> Span:
    """Count every committed record of ``topic`` and its first and last append time
    (``LogAppendTime``, POSIX s): when a drain's first record came out and when its
    writer was really done, whatever the polling interval of whoever watched it."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    count, first, last = 0, float("inf"), 0.0
    try:
        parts = [TopicPartition(topic, p) for p in range(await partition_count(bootstrap, topic))]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        remaining = {tp for tp in parts if ends[tp] > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000, max_records=20000)
            for records in batch.values():
                count += len(records)
                if records:
                    first = min(first, records[0].timestamp / 1000.0)
                    last = max(last, records[-1].timestamp / 1000.0)
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return Span(count, first if count else 0.0, last)
