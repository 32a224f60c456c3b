"""``pipeline replay --from-lsn``: re-drive the agents over the retained topic.

The slot cannot be rewound (DESIGN.md invariant 5), so the Kafka topic is the log: its
retention is unlimited (``retention.ms=-1``, set by the reader when it creates the
topic). Replay reads every partition from its first retained record, keeps the records
whose commit LSN is in ``[from_lsn, to_lsn]``, and hands them to the same handlers the
live agents use. Every effect is idempotent (invariant 3), so a replay changes nothing
that is right and repairs what is missing: a projection row that was lost, a pending job
whose workflow never started, a claimed job without its ``workflow_started``.

Replay writes its own checkpoints (consumer ``<group>.replay``), never the live agents'.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

import orjson
import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import REGISTRY

from pipeline.agents import effects
from pipeline.agents.errors import RecordRejected
from pipeline.agents.headers import header_map, parse_position
from pipeline.agents.runtime import AgentRuntime, Record
from pipeline.config import Settings
from pipeline.errors import PipelineError
from pipeline.replay_range import Hole, PartitionHead, find_hole, safe_start
from replication.kafka_client import client_options
from replication.lsn import LSN, Position
from replication.producer import MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)

BATCH = 500
Progress = Callable[[int], None]


class ReplayRangeError(PipelineError):
    """The range has a hole: records in it were deleted from a partition of the topic."""

    def __init__(self, hole: Hole) -> None:
        super().__init__(str(hole))
        self.hole = hole
        self.requested = hole.from_lsn
        # The smallest safe --from-lsn (the maximum over the truncated partitions).
        self.oldest = hole.safe_from


@dataclass(slots=True)
class ReplaySummary:
    """What a replay read, re-drove and repaired."""

    records_scanned: int = 0
    events_redriven: int = 0
    by_event_type: Counter[str] = field(default_factory=Counter)
    events_emitted: int = 0
    projection_rows_repaired: int = 0
    workflows_started: int = 0
    safe_from_lsn: LSN | None = None
    dry_run: bool = False
    seconds: float = 0.0


def _record(message: object, topic: str) -> Record:
    return Record(
        topic=topic,
        partition=message.partition,  # type: ignore[attr-defined]
        offset=message.offset,  # type: ignore[attr-defined]
        key=message.key,  # type: ignore[attr-defined]
        value=message.value,  # type: ignore[attr-defined]
        headers=tuple((str(k), bytes(v or b"")) for k, v in message.headers),  # type: ignore[attr-defined]
    )


def _position(record: Record) -> Position | None:
    try:
        return parse_position(header_map(record.headers))
    except RecordRejected:
        return None


async def _partitions(settings: Settings) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        **client_options(settings.kafka_security),
    )
    await admin.start()
    try:
        described = await admin.describe_topics([settings.topic])
    finally:
        await admin.close()
    parts = described[0].get("partitions") or []
    if not parts:
        raise PipelineError(f"topic {settings.topic} does not exist: nothing to replay")
    return [TopicPartition(settings.topic, int(p["partition"])) for p in parts]


async def _server_now(dsn: str) -> datetime:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        row = await (await conn.execute("SELECT clock_timestamp()")).fetchone()
    assert row is not None
    return cast("datetime", row[0])


# The events this replay caused: caused by a re-driven event (metadata.causation_id), or
# by an event so caused, and written since the replay started. A live system's own
# emissions have other causes, so they are not counted (count(*) on domain_events did).
_CAUSED_SQL = """
WITH RECURSIVE caused(id) AS (
    SELECT e.id FROM domain_events e
     WHERE e.created_at >= %(since)s
       AND e.event_metadata ->> 'causation_id' = ANY(%(causes)s)
    UNION
    SELECT e.id FROM domain_events e JOIN caused c
        ON e.event_metadata ->> 'causation_id' = c.id::text
     WHERE e.created_at >= %(since)s
)
SELECT count(*) FROM caused
"""


async def _caused_count(dsn: str, since: datetime, causes: list[str]) -> int:
    if not causes:
        return 0
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        row = await (await conn.execute(_CAUSED_SQL, {"since": since, "causes": causes})).fetchone()
    return int(row[0]) if row else 0


def _applied_total() -> float:
    """Events that changed a projection row, summed over projections.

    Process-wide, which is this replay's own count: a replay process runs nothing else.
    """
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "pipeline_events_applied"
        for sample in metric.samples
        if sample.name == "pipeline_events_applied_total"
    )


def _started_total() -> float:
    return (
        REGISTRY.get_sample_value("pipeline_workflow_starts_total", {"outcome": "started"}) or 0.0
    )


def build_runtime(settings: Settings, producer: AIOKafkaProducer) -> AgentRuntime:
    """The live agents' handlers, with replay's own checkpoint consumer name."""

    async def dead_letter(record: Record, headers: list[tuple[str, bytes]]) -> None:
        await producer.send_and_wait(
            settings.dead_letter_topic, value=record.value, key=record.key, headers=headers
        )

    return AgentRuntime(
        worker_id=f"replay-{int(time.time())}",
        consumer=f"{settings.consumer_group}.replay",
        enqueue_db=effects.Database(settings.database_url.get_secret_value(), "replay-enqueue"),
        starter_db=effects.Database(settings.database_url.get_secret_value(), "replay-starter"),
        projection_db=effects.Database(
            settings.database_url.get_secret_value(), "replay-projection"
        ),
        temporal=effects.WorkflowStartClient(
            settings.temporal_address,
            settings.temporal_namespace,
            settings.temporal_task_queue,
            security=settings.temporal_security,
        ),
        dead_letter=dead_letter,
    )


async def replay(
    settings: Settings,
    from_lsn: LSN,
    to_lsn: LSN | None = None,
    *,
    dry_run: bool = False,
    on_total: Callable[[int], None] | None = None,
    progress: Progress | None = None,
) -> ReplaySummary:
    """Re-drive the agents over records with from_lsn <= commit_lsn <= to_lsn."""
    started_at = time.time()
    summary = ReplaySummary(dry_run=dry_run)
    parts = await _partitions(settings)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        max_partition_fetch_bytes=32 * 1024 * 1024,
        isolation_level="read_committed",  # the reader writes in Kafka transactions
        **client_options(settings.kafka_security),
    )
    await consumer.start()
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_idempotence=True,
        acks="all",
        max_request_size=MAX_MESSAGE_BYTES,  # dead letters as large as the topic takes
        **client_options(settings.kafka_security),
    )
    runtime: AgentRuntime | None = None
    try:
        consumer.assign(parts)
        begins = await consumer.beginning_offsets(parts)
        ends = await consumer.end_offsets(parts)
        if on_total is not None:
            on_total(sum(ends[tp] - begins[tp] for tp in parts))
        heads = await _heads(consumer, parts, begins, ends)
        summary.safe_from_lsn = safe_start(heads)
        hole = find_hole(heads, from_lsn)
        if hole is not None:
            raise ReplayRangeError(hole)
        causes: list[str] = []
        if not dry_run:
            await producer.start()
            runtime = build_runtime(settings, producer)
            since = await _server_now(settings.database_url.get_secret_value())
            starts_before = _started_total()
            applied_before = _applied_total()
        for tp in parts:
            consumer.seek(tp, begins[tp])
        remaining = {tp for tp in parts if ends[tp] > begins[tp]}
        batches: dict[int, list[Record]] = {}
        while remaining:
            fetched = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, messages in fetched.items():
                for message in messages:
                    if message.offset >= ends[tp]:
                        remaining.discard(tp)
                        break
                    summary.records_scanned += 1
                    record = _record(message, tp.topic)
                    pos = _position(record)
                    in_range = pos is None or (
                        pos.commit_lsn >= from_lsn and (to_lsn is None or pos.commit_lsn <= to_lsn)
                    )
                    if in_range:
                        summary.events_redriven += 1
                        summary.by_event_type[_event_type(record)] += 1
                        causes.append(_event_id(record))
                        if runtime is not None:
                            await runtime.enqueue(record)
                            await runtime.start(record)
                            batch = batches.setdefault(tp.partition, [])
                            batch.append(record)
                            if len(batch) >= BATCH:
                                await runtime.project(batch)
                                batches[tp.partition] = []
                if progress is not None and messages:
                    progress(len(messages))
            # The position, not the last record: a transaction's commit marker (the
            # reader writes in Kafka transactions) may be the partition's last offset.
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        if runtime is not None:
            for batch in batches.values():
                if batch:
                    await runtime.project(batch)
            summary.events_emitted = await _caused_count(
                settings.database_url.get_secret_value(), since, causes
            )
            summary.projection_rows_repaired = int(_applied_total() - applied_before)
            summary.workflows_started = int(_started_total() - starts_before)
    finally:
        if runtime is not None:
            await runtime.close()
        await producer.stop()
        await consumer.stop()
    summary.seconds = time.time() - started_at
    log.info(
        "replay from lsn=%s to lsn=%s: %d scanned, %d re-driven, %d events emitted, "
        "%d projection rows repaired, %d workflows started%s",
        from_lsn,
        to_lsn,
        summary.records_scanned,
        summary.events_redriven,
        summary.events_emitted,
        summary.projection_rows_repaired,
        summary.workflows_started,
        " (dry run)" if dry_run else "",
    )
    return summary


def _event_type(record: Record) -> str:
    try:
        value = orjson.loads(record.value or b"")
    except orjson.JSONDecodeError:
        return "<undecodable>"
    return str(value.get("event_type", "<none>")) if isinstance(value, dict) else "<not an object>"


def _event_id(record: Record) -> str:
    try:
        value = orjson.loads(record.value or b"")
    except orjson.JSONDecodeError:
        return ""
    return str(value.get("id", "")) if isinstance(value, dict) else ""


async def _heads(
    consumer: AIOKafkaConsumer,
    parts: list[TopicPartition],
    begins: dict[TopicPartition, int],
    ends: dict[TopicPartition, int],
) -> list[PartitionHead]:
    """Each partition's first retained offset and that record's position."""
    heads = []
    for tp in parts:
        first: Position | None = None
        if ends[tp] > begins[tp]:
            consumer.seek(tp, begins[tp])
            fetched = await consumer.getmany(tp, timeout_ms=5000, max_records=1)
            for message in fetched.get(tp, []):
                first = _position(_record(message, tp.topic))
        heads.append(PartitionHead(tp.partition, begins[tp], ends[tp], first))
    return heads
