"""The bootstrap's reads and writes of the event store, on the worker's pooled connections.

Activities are retried, so every write goes through ``api.emit_domain_event`` with an
idempotency key, and the values a retry must reproduce (an invitation's id and expiry) are read
back from the stored event rather than generated again.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

from pipeline.bootstrap.pool import ConnectionPool
from pipeline.eventstore import NewEvent, emit


async def emit_events(pool: ConnectionPool, events: Sequence[NewEvent]) -> list[uuid.UUID]:
    """Append ``events`` in one transaction; returns their ids (the first ones on a repeat)."""
    async with pool.connection() as conn, conn.transaction():
        return [await emit(conn, event) for event in events]


async def emit_and_read(pool: ConnectionPool, event: NewEvent) -> Mapping[str, object]:
    """Append ``event`` and return the ``event_data`` actually stored under its key.

    On a repeated key that is the first attempt's data, which is how a retried activity
    returns the invitation id and expiry it generated the first time.
    """
    async with pool.connection() as conn, conn.transaction():
        event_id = await emit(conn, event)
        cur = await conn.execute("SELECT event_data FROM domain_events WHERE id = %s", (event_id,))
        row = await cur.fetchone()
    if row is None or not isinstance(row[0], Mapping):
        raise RuntimeError(f"event {event_id} has no event_data")
    return row[0]


async def find_by_key(pool: ConnectionPool, key: str) -> Mapping[str, object] | None:
    """The ``event_data`` of the event stored under idempotency ``key``, if any."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT event_data FROM domain_events WHERE idempotency_key = %s", (key,)
        )
        row = await cur.fetchone()
    return row[0] if row is not None and isinstance(row[0], Mapping) else None


async def find_by_key_prefix(
    pool: ConnectionPool, stream_id: str, prefix: str
) -> list[Mapping[str, object]]:
    """``event_data`` of the stream's events whose key starts with ``prefix``, in order."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT event_data FROM domain_events "
            "WHERE stream_id = %s AND starts_with(idempotency_key, %s) ORDER BY stream_version",
            (stream_id, prefix),
        )
        rows = await cur.fetchall()
    return [row[0] for row in rows if isinstance(row[0], Mapping)]
