"""The bootstrap's reads and writes of the event store, on the worker's pooled connections.

Activities are retried, so every write goes through ``api.emit_domain_event`` with an
idempotency key, and the values a retry must reproduce (an invitation's id and expiry) are read
back from the stored event rather than generated again.

Each write is one transaction in one round trip (:func:`pipeline.roundtrip.one_transaction`);
``conn.transaction()`` waits for the server three times (four in pipeline mode).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

from pipeline.bootstrap.pool import ConnectionPool
from pipeline.eventstore import EMIT_SQL, NewEvent, emit_params, emitted_id
from pipeline.roundtrip import one_transaction

_BY_KEY = "SELECT event_data FROM domain_events WHERE idempotency_key = %s"


async def emit_events(pool: ConnectionPool, events: Sequence[NewEvent]) -> list[uuid.UUID]:
    """Append ``events`` in one transaction; returns their ids (the first ones on a repeat)."""
    async with pool.connection() as conn:
        rows = await one_transaction(conn, [(EMIT_SQL, emit_params(event)) for event in events])
    return [emitted_id(row) for row in rows]


async def emit_and_read(pool: ConnectionPool, event: NewEvent) -> Mapping[str, object]:
    """Append ``event`` and return the ``event_data`` actually stored under its key.

    On a repeated key that is the first attempt's data, which is how a retried activity
    returns the invitation id and expiry it generated the first time. The read goes by the
    key (unique), so it needs no answer from the append and rides in the same batch.
    """
    async with pool.connection() as conn:
        emitted, row = await one_transaction(
            conn, [(EMIT_SQL, emit_params(event)), (_BY_KEY, (event.idempotency_key,))]
        )
    event_id = emitted_id(emitted)
    if row is None or not isinstance(row[0], Mapping):
        raise RuntimeError(f"event {event_id} has no event_data")
    return row[0]


async def find_by_key(pool: ConnectionPool, key: str) -> Mapping[str, object] | None:
    """The ``event_data`` of the event stored under idempotency ``key``, if any."""
    async with pool.connection() as conn:
        cur = await conn.execute(_BY_KEY, (key,))
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
