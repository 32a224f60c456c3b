"""Appending to the event store through ``api.emit_domain_event``.

Every event the pipeline or the worker emits goes through the database function (never a
bare INSERT), with an idempotency key derived from its cause, so a retried emission returns
the first event's id and adds nothing (DESIGN.md invariant 3).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import psycopg
from psycopg.rows import TupleRow
from psycopg.types.json import Jsonb

from pipeline import jsontext

JsonObject = Mapping[str, object]


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append: its stream, type, payload and idempotency key."""

    stream_id: uuid.UUID
    stream_type: str
    event_type: str
    event_data: JsonObject
    idempotency_key: str
    event_metadata: JsonObject = field(default_factory=dict)


def idempotency_key(cause: str | uuid.UUID, effect: str) -> str:
    """The key of the event that ``cause`` (an event id, or a workflow id) leads to."""
    return f"{cause}:{effect}"


# One event appended (stream-based signature); parameters from emit_params().
EMIT_SQL: Final = (
    "SELECT api.emit_domain_event("
    "p_stream_id => %s, p_stream_type => %s, p_event_type => %s, "
    "p_event_data => %s, p_event_metadata => %s, p_idempotency_key => %s)"
)


def json_param(obj: JsonObject) -> Jsonb:
    """obj as a jsonb parameter, every number exact (:func:`pipeline.jsontext.dumps`:
    orjson, with Decimals and integers past 64 bits as their digits)."""
    return Jsonb(obj, dumps=jsontext.dumps)


def emit_params(event: NewEvent) -> tuple[object, ...]:
    """The parameters of :data:`EMIT_SQL` for event."""
    return (
        event.stream_id,
        event.stream_type,
        event.event_type,
        json_param(event.event_data),
        json_param(event.event_metadata),
        event.idempotency_key,
    )


async def emit(conn: psycopg.AsyncConnection[TupleRow], event: NewEvent) -> uuid.UUID:
    """Append event (stream-based signature); returns its id, or the first one's on a repeat."""
    cur = await conn.execute(EMIT_SQL, emit_params(event))
    return emitted_id(await cur.fetchone())


def emit_sync(conn: psycopg.Connection[TupleRow], event: NewEvent) -> uuid.UUID:
    """Blocking twin of :func:`emit`, for the CLI and tests."""
    return emitted_id(conn.execute(EMIT_SQL, emit_params(event)).fetchone())


def emitted_id(row: tuple[object, ...] | None) -> uuid.UUID:
    """The event id in :data:`EMIT_SQL`'s row."""
    if row is None or not isinstance(row[0], uuid.UUID):
        raise RuntimeError("api.emit_domain_event returned no id")
    return row[0]
