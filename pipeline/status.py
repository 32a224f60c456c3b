"""``pipeline status``: the slot, the reader, Kafka consumer lag, the queue, dead letters.

Read-only: it opens no replication connection, joins no consumer group (offsets are read
with the admin API) and writes nothing. A service that cannot be reached does not hide
the others: the slot's lag is shown while Kafka is down (exactly when the WAL grows).
"""

from __future__ import annotations

import asyncio
from typing import TypedDict

import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from pipeline import reach
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
    """What could be read; a section is None when its service could not be reached, and
    ``unavailable`` says why (service name -> one line with the fix)."""

    slot: SlotStatus | None
    reader: ReaderStatus | None
    kafka: KafkaStatus | None
    queue: dict[str, int] | None
    # pipeline_dead_letters: open, not_sent (the copy never reached the topic), redriven.
    dead_letters: dict[str, int] | None
    unavailable: dict[str, str]


async def _dead_letters(settings: Settings) -> dict[str, int]:
    async with await psycopg.AsyncConnection.connect(
        settings.database_url.get_secret_value(), autocommit=True
    ) as conn:
        row = await (
            await conn.execute(
                "SELECT count(*) FILTER (WHERE redriven_at IS NULL), "
                "count(*) FILTER (WHERE redriven_at IS NULL AND NOT published), "
                "count(*) FILTER (WHERE redriven_at IS NOT NULL) FROM pipeline_dead_letters"
            )
        ).fetchone()
    open_, unsent, redriven = row if row is not None else (0, 0, 0)
    return {"open": int(open_), "not_sent": int(unsent), "redriven": int(redriven)}


async def _database(settings: Settings) -> tuple[SlotStatus, ReaderStatus, dict[str, int]]:
    async with await psycopg.AsyncConnection.connect(
        settings.database_url.get_secret_value(), autocommit=True, connect_timeout=10
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


# Up to this many offsets are read to count records exactly; past it the offset
# difference is the (slightly high) count.
EXACT_COUNT_MAX = 10_000


async def _records_between(
    consumer: AIOKafkaConsumer, tp: TopicPartition, start: int, end: int
) -> int:
    """Records readable in ``[start, end)`` of ``tp``.

    The reader writes in Kafka transactions: each commit leaves a marker that takes an
    offset but is no record, so ``end - start`` counts one too many per transaction (a
    caught-up consumer would show a lag of 1 on every partition). A small range is read
    to count exactly; a large one keeps the offset difference.
    """
    if end <= start or end - start > EXACT_COUNT_MAX:
        return max(0, end - start)
    consumer.assign([tp])
    consumer.seek(tp, start)
    count = 0
    deadline = asyncio.get_running_loop().time() + 5.0
    while await consumer.position(tp) < end and asyncio.get_running_loop().time() < deadline:
        batch = await consumer.getmany(tp, timeout_ms=200)
        count += sum(1 for r in batch.get(tp, []) if r.offset < end)
    return count


async def _kafka(settings: Settings) -> KafkaStatus:
    security = client_options(settings.kafka_security)
    await reach.kafka(settings.kafka_bootstrap_servers, settings.kafka_security)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, **security)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        isolation_level="read_committed",  # ends = what consumers can read
        **security,
    )
    try:
        await admin.start()
        await consumer.start()
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
                        "lag": await _records_between(consumer, tp, offset or 0, ends[tp]),
                    }
                )
        if settings.dead_letter_topic in topics:
            dparts = await _partitions(admin, settings.dead_letter_topic)
            starts = await consumer.beginning_offsets(dparts)
            ends = await consumer.end_offsets(dparts)
            for tp in dparts:
                dead += await _records_between(consumer, tp, starts[tp], ends[tp])
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
    """Collect what each service answers; an unreachable one is named in ``unavailable``."""
    report: Status = {
        "slot": None,
        "reader": None,
        "kafka": None,
        "queue": None,
        "dead_letters": None,
        "unavailable": {},
    }
    try:
        report["slot"], report["reader"], report["queue"] = await _database(settings)
        report["dead_letters"] = await _dead_letters(settings)
    except (psycopg.Error, OSError) as exc:
        report["unavailable"]["postgres"] = reach.postgres_message(exc)
    try:
        report["kafka"] = await _kafka(settings)
    except reach.Unreachable as exc:
        report["unavailable"]["kafka"] = str(exc)
    except (KafkaError, OSError) as exc:
        report["unavailable"]["kafka"] = reach.kafka_message(settings.kafka_bootstrap_servers, exc)
    return report


def render(report: Status) -> list[str]:
    """The text lines of ``pipeline status``: what was read (``unavailable`` goes to stderr)."""
    lines: list[str] = []
    slot, kafka, queue = report["slot"], report["kafka"], report["queue"]
    if slot is not None and slot["exists"]:
        holder = f"pid {slot['active_pid']}" if slot["active"] else "nobody (no reader active)"
        lines.append(
            f"slot      {slot['name']}: confirmed {slot['confirmed_flush_lsn']}, "
            f"lag {slot['lag_bytes']} bytes, held by {holder}"
        )
    elif slot is not None:
        lines.append(f"slot      {slot['name']}: not created yet")
    if kafka is not None:
        lags = ", ".join(f"p{p['partition']}={p['lag']}" for p in kafka["partitions"])
        lines.append(
            f"kafka     {kafka['topic']} group {kafka['consumer_group']}: "
            f"lag {kafka['total_lag']} ({lags})"
        )
    if queue is not None:
        lines.append("queue     " + ", ".join(f"{k}={v}" for k, v in queue.items()))
    if kafka is not None:
        lines.append(f"dead      {kafka['dead_letters']} record(s) in the dead-letter topic")
    dead = report["dead_letters"]
    if dead is not None:
        lines.append(
            "          open={open}, not sent={not_sent}, redriven={redriven}".format(**dead)
            + " (`pipeline dead-letters list`)"
        )
    return lines
