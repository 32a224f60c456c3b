"""Reading a topic back in tests."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

import orjson
from aiokafka import AIOKafkaConsumer

from replication.lsn import LSN, Position


@dataclass(frozen=True, slots=True)
class Record:
    partition: int
    offset: int
    key: bytes
    row: dict[str, object]
    position: Position


async def read_topic(
    bootstrap: str, topic: str, expected: int, timeout: float = 120
) -> list[Record]:
    """Read until `expected` records arrived (or timeout), from the beginning."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"test-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=32 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    records: list[Record] = []
    try:
        async with asyncio.timeout(timeout):
            while len(records) < expected:
                batch = await consumer.getmany(timeout_ms=500)
                for tp, msgs in batch.items():
                    for m in msgs:
                        headers = dict(m.headers)
                        records.append(
                            Record(
                                tp.partition,
                                m.offset,
                                m.key or b"",
                                orjson.loads(m.value or b"{}"),
                                Position(
                                    LSN.parse(headers["commit_lsn"].decode()), int(headers["idx"])
                                ),
                            )
                        )
        # Anything beyond `expected` that is already there counts too (duplicates).
        extra = await consumer.getmany(timeout_ms=1000)
        for tp, msgs in extra.items():
            for m in msgs:
                headers = dict(m.headers)
                records.append(
                    Record(
                        tp.partition,
                        m.offset,
                        m.key or b"",
                        orjson.loads(m.value or b"{}"),
                        Position(LSN.parse(headers["commit_lsn"].decode()), int(headers["idx"])),
                    )
                )
    finally:
        await consumer.stop()
    return records
