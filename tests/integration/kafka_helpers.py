"""Reading a topic back in tests."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord

from replication.kafka_client import PLAINTEXT, KafkaSecurity, client_options
from replication.lsn import LSN, Position


@dataclass(frozen=True, slots=True)
class Record:
    partition: int
    offset: int
    key: bytes
    row: dict[str, object]
    position: Position
    headers: dict[str, bytes]


def _record(m: ConsumerRecord[bytes, bytes]) -> Record:
    headers = {k: bytes(v) for k, v in m.headers}
    try:
        row = orjson.loads(m.value or b"{}")
    except orjson.JSONDecodeError:
        row = {"_raw": (m.value or b"").decode(errors="replace")}
    return Record(
        m.partition,
        m.offset,
        m.key or b"",
        row,
        Position(LSN.parse(headers["commit_lsn"].decode()), int(headers["idx"])),
        headers,
    )


async def read_topic(
    bootstrap: str,
    topic: str,
    expected: int,
    timeout: float = 120,
    security: KafkaSecurity = PLAINTEXT,
) -> list[Record]:
    """Read until `expected` records arrived (or timeout), from the beginning; records
    already there beyond `expected` (duplicates) are returned too."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"test-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        enable_auto_commit=False,
        max_partition_fetch_bytes=32 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
        **client_options(security),
    )
    await consumer.start()
    records: list[Record] = []
    try:
        async with asyncio.timeout(timeout):
            while len(records) < expected:
                batch = await consumer.getmany(timeout_ms=500)
                records.extend(_record(m) for msgs in batch.values() for m in msgs)
        extra = await consumer.getmany(timeout_ms=1000)
        records.extend(_record(m) for msgs in extra.values() for m in msgs)
    finally:
        await consumer.stop()
    return records
