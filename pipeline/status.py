"""``pipeline status``: the slot, the reader, Kafka consumer lag, the queue, dead letters.

Read-only: it opens no replication connection, joins no consumer group (offsets are read
with the admin API) and writes nothing.
"""

from __future__ import annotations

from typing import TypedDict

import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from pipeline.config import Settings
from replication.kafka_client import client_options


class SlotStatus(TypedDict):
    name: str
    exists: bool
    active: bool
    active_pid: int | None
    confirmed_flush_lsn: str | None
    lag_bytes: int | None


class ReaderStatus(TypedDict):
    holder_pid: int | None
    holder_application: str | None
    holder_client_addr: str | None


class PartitionLag(TypedDict):
    partition: int
    end_offset: int
    committed_offset: int | None
    lag: int


class KafkaStatus(TypedDict):
    topic: str
    consumer_group: str
    partitions: list[PartitionLag]
    total_lag: int
    dead_letters: int


class Status(TypedDict):
    slot: SlotStatus
    reader: ReaderStatus
    kafka: KafkaStatus
    queue: dict[str, int]


async def _database(settings: Settings) -> tuple[SlotStatus, ReaderStatus, dict[str, int]]:
    async with await psycopg.AsyncConnection.connect(
        settings.database_url, autocommit=True
    ) as conn:
        cur = await conn.execute(
            "SELECT s.active, s.active_pid, s.confirmed_flush_lsn::text, "
            "pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::bigint, "
            "a.application_name, a.client_addr::text "
            "FROM pg_replication_slots s LEFT JOIN pg_stat_activity a ON a.pid = s.active_pid "
            "WHERE s.slot_name = %s",
            (settings.slot_name,),
        )
        row = await cur.fetchone()
        queue_rows = await (
            await conn.execute(
                "SELECT status, count(*) FROM workflow_queue_projection GROUP BY status"
            )
        ).fetchall()
    queue = {s: 0 for s in ("pending", "processing", "completed", "failed")}
    queue.update({str(status): int(count) for status, count in queue_rows})
    if row is None:
        slot: SlotStatus = {
            "name": settings.slot_name,
            "exists": False,
            "active": False,
            "active_pid": None,
            "confirmed_flush_lsn": None,
            "lag_bytes": None,
        }
        return (
            slot,
            {"holder_pid": None, "holder_application": None, "holder_client_addr": None},
            queue,
        )
    active, pid, confirmed, lag, app_name, addr = row
    slot = {
        "name": settings.slot_name,
        "exists": True,
        "active": bool(active),
        "active_pid": pid,
        "confirmed_flush_lsn": confirmed,
        "lag_bytes": int(lag) if lag is not None else None,
    }
    reader: ReaderStatus = {
        "holder_pid": pid,
        "holder_application": app_name,
        "holder_client_addr": addr,
    }
    return slot, reader, queue


async def _partitions(admin: AIOKafkaAdminClient, topic: str) -> list[TopicPartition]:
    described = await admin.describe_topics([topic])
    numbers = sorted(int(p["partition"]) for p in described[0]["partitions"])
    return [TopicPartition(topic, n) for n in numbers]


async def _kafka(settings: Settings) -> KafkaStatus:
    security = client_options(settings.kafka_security)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, **security)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False, **security
    )
    await admin.start()
    await consumer.start()
    try:
        topics = set(await consumer.topics())
        partitions: list[PartitionLag] = []
        dead = 0
        if settings.topic in topics:
            parts = await _partitions(admin, settings.topic)
            ends = await consumer.end_offsets(parts)
            committed = await admin.list_consumer_group_offsets(settings.consumer_group)
            for tp in parts:
                meta = committed.get(tp)
                offset = meta.offset if meta is not None and meta.offset >= 0 else None
                partitions.append(
                    {
                        "partition": tp.partition,
                        "end_offset": ends[tp],
                        "committed_offset": offset,
                        "lag": ends[tp] - (offset or 0),
                    }
                )
        if settings.dead_letter_topic in topics:
            dparts = await _partitions(admin, settings.dead_letter_topic)
            starts = await consumer.beginning_offsets(dparts)
            ends = await consumer.end_offsets(dparts)
            dead = sum(ends[tp] - starts[tp] for tp in dparts)
        return {
            "topic": settings.topic,
            "consumer_group": settings.consumer_group,
            "partitions": partitions,
            "total_lag": sum(p["lag"] for p in partitions),
            "dead_letters": dead,
        }
    finally:
        await consumer.stop()
        await admin.close()


async def gather(settings: Settings) -> Status:
    """Collect the status; raises psycopg / Kafka errors when a service is unreachable."""
    slot, reader, queue = await _database(settings)
    kafka = await _kafka(settings)
    return {"slot": slot, "reader": reader, "kafka": kafka, "queue": queue}
