"""The initial snapshot: rows already in ``domain_events`` when the slot is created.

They are read in the slot's exported snapshot, so together with the stream that starts
at the slot's consistent point every row is sent exactly once. Their positions use
commit LSN 0/0 (idx = order in the snapshot), which sorts before every streamed event.
The value is built as the stream's (:func:`replication.record_value.assemble`): jsonb as
PostgreSQL prints it, never parsed, and an event too large for a record as a claim check;
the headers are the stream's, ``event_type`` included;
tests/unit/replication/test_snapshot.py checks that a row gives the same bytes both ways.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from uuid import UUID

import orjson
import psycopg

from replication.lsn import LSN, Position
from replication.record_value import CLAIM_CHECK_HEADER, EVENT_TYPE_HEADER, assemble

Headers = list[tuple[str, bytes]]
Send = Callable[[Position, bytes, bytes, Headers], Awaitable[None]]
# A row of _SELECT as psycopg returns it.
SnapshotRow = tuple[UUID, UUID, str, int, str, str, str, str | None, datetime]

_SELECT = (
    "SELECT id, stream_id, stream_type, stream_version, event_type, event_data::text, "
    "event_metadata::text, idempotency_key, created_at FROM domain_events "
    "ORDER BY created_at, stream_id, stream_version"
)


async def copy_snapshot(dsn: str, snapshot_name: str, send: Send) -> int:
    """Send every row visible in the exported snapshot; returns how many."""
    copied = 0
    async with await psycopg.AsyncConnection.connect(dsn) as conn, conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        await conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot_name}'")
        async with conn.cursor(name="pipeline_snapshot") as cur:
            await cur.execute(_SELECT)
            async for row in cur:
                pos, key, value, headers = snapshot_record(row, copied)
                del row
                await send(pos, key, value, headers)
                copied += 1
    return copied


def snapshot_record(row: SnapshotRow, idx: int) -> tuple[Position, bytes, bytes, Headers]:
    """The record of the snapshot's ``idx``-th row: position, key, value, headers."""
    event_id, stream_id, stream_type, version, event_type, data, meta, key, created = row
    value, claim_checked = assemble(
        [
            str(event_id).encode(),
            str(stream_id).encode(),
            orjson.dumps(stream_type),
            b"%d" % version,
            orjson.dumps(event_type),
            data.encode(),
            meta.encode(),
            orjson.dumps(key),
            orjson.dumps(created),
        ]
    )
    headers = [
        ("commit_lsn", str(LSN.ZERO).encode()),
        ("idx", str(idx).encode()),
        ("xid", b"0"),
        ("commit_ts", created.isoformat().encode()),
        (EVENT_TYPE_HEADER, event_type.encode()),
    ]
    if claim_checked:
        headers.append(CLAIM_CHECK_HEADER)
    return Position(LSN.ZERO, idx), str(stream_id).encode(), value, headers
