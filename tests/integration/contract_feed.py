"""Stand-in for the replication reader in agent tests: domain_events rows → Kafka records.

Records are in the reader's exact format (key = stream_id, value = the row as JSON,
headers commit_lsn / idx / xid / commit_ts, and with ``event_type_header`` the
``event_type`` header the reader writes; without it, the records of a reader that wrote
none). Positions come from a counter: one transaction per row, each with a higher commit
LSN, so the order is the store's order.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
import psycopg
from aiokafka import AIOKafkaProducer

from replication.lsn import LSN
from replication.record_value import EVENT_TYPE_HEADER

KafkaRecord = tuple[bytes, bytes, list[tuple[str, bytes]]]

_ROWS = (
    "SELECT id, stream_id, stream_type, stream_version, event_type, event_data, "
    "event_metadata, idempotency_key, created_at FROM domain_events "
    "ORDER BY created_at, stream_id, stream_version"
)


def row_value(row: tuple[object, ...]) -> bytes:
    """The JSON value the reader produces for a domain_events row."""
    created = row[8]
    assert isinstance(created, datetime)
    return orjson.dumps(
        {
            "id": str(row[0]),
            "stream_id": str(row[1]),
            "stream_type": row[2],
            "stream_version": row[3],
            "event_type": row[4],
            "event_data": row[5],
            "event_metadata": row[6],
            "idempotency_key": row[7],
            "created_at": created.isoformat(),
        }
    )


@dataclass
class Feeder:
    """Tails domain_events and produces each new row once, in store order."""

    dsn: str
    bootstrap: str
    topic: str
    event_type_header: bool = False
    produced: list[KafkaRecord] = field(default_factory=list)
    _seen: set[uuid.UUID] = field(default_factory=set)
    _counter: int = 0
    _producer: AIOKafkaProducer | None = None
    _task: asyncio.Task[None] | None = None

    def next_headers(self) -> list[tuple[str, bytes]]:
        self._counter += 1
        lsn = LSN(0x1_0000_0000 + self._counter * 0x200)
        return [
            ("commit_lsn", str(lsn).encode()),
            ("idx", b"0"),
            ("xid", str(700 + self._counter).encode()),
            ("commit_ts", datetime.now(UTC).isoformat().encode()),
        ]

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True
        )
        await self._producer.start()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._producer is not None:
            await self._producer.stop()

    async def send(self, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        """Produce one record (also used for poison records and redelivery)."""
        assert self._producer is not None
        await self._producer.send_and_wait(self.topic, value, key=key, headers=headers)

    async def _run(self) -> None:
        async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
            while True:
                rows = await (await conn.execute(_ROWS)).fetchall()
                for row in rows:
                    event_id = row[0]
                    assert isinstance(event_id, uuid.UUID)
                    if event_id in self._seen:
                        continue
                    self._seen.add(event_id)
                    headers = self.next_headers()
                    if self.event_type_header:
                        headers.append((EVENT_TYPE_HEADER, str(row[4]).encode()))
                    record = (str(row[1]).encode(), row_value(row), headers)
                    await self.send(*record)
                    self.produced.append(record)
                await asyncio.sleep(0.1)
