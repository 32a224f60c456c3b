"""Claim checks resolved: an oversized event's payload, read from the store by id.

The reader sends an event whose record would exceed the topic's limit as a claim check
(``claim_check: 1`` header; the value is the row without ``event_data`` and
``event_metadata``, see docs/events.md). Here the two are read from ``domain_events``
by the event's id, as PostgreSQL prints them, and parsed with
:func:`pipeline.jsontext.loads`, then the record is decoded as any other. An id
the store does not hold is a rejection (dead-lettered once), not an outage.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, Final

from pipeline.agents import effects
from pipeline.agents.errors import RecordRejected
from pipeline.agents.headers import is_claim_check
from pipeline.agents.records import (
    DomainEvent,
    Validator,
    decode_record,
    decode_row,
    parse_value,
    projection_row,
    projection_row_of,
)
from pipeline.jsontext import loads

if TYPE_CHECKING:
    from pipeline.agents.runtime import Record
    from replication.lsn import Position

# bytea in binary format: the text's bytes as PostgreSQL holds them, no decoding to str.
_PAYLOAD: Final = (
    "SELECT convert_to(event_data::text, 'UTF8'), convert_to(event_metadata::text, 'UTF8') "
    "FROM domain_events WHERE id = %s"
)


class ClaimChecks:
    """Decodes records, reading a claim check's payload from the store first."""

    def __init__(self, db: effects.Database, agent: str) -> None:
        self._db = db
        self._agent = agent

    async def close(self) -> None:
        """Close the store's connection."""
        await self._db.close()

    async def decode(
        self, record: Record, validate: Validator | None, row: dict[str, Any] | None = None
    ) -> DomainEvent:
        """The record's event; raises :class:`RecordRejected` saying why not.

        ``row`` is the record's value already parsed (by routing,
        :mod:`pipeline.agents.routing`), so it is not parsed again; it is not modified.
        """
        if not is_claim_check(record.headers):
            if row is not None:
                return decode_row(record.key, row, record.headers, validate)
            return decode_record(record.key, record.value, record.headers, validate)
        return decode_row(record.key, await self._resolved(record, row), record.headers, validate)

    async def projection_row(
        self, record: Record, validate: Validator | None
    ) -> tuple[dict[str, object], Position]:
        """The record's event as the projection's row and its position
        (:func:`pipeline.agents.records.projection_row`); raises :class:`RecordRejected`."""
        if not is_claim_check(record.headers):
            return projection_row(record.key, record.value, record.headers, validate)
        row = await self._resolved(record, None)
        return projection_row_of(record.key, row, record.headers, validate)

    async def _resolved(self, record: Record, row: dict[str, Any] | None) -> dict[str, Any]:
        """A claim check's row with its payload read from the store (a new dict)."""
        row = dict(row) if row is not None else parse_value(record.value)
        payload = await effects.with_retries(
            self._agent,
            f"read the claim-checked event {row.get('id')} of {record.where}",
            lambda: self._payload(row.get("id")),
        )
        if payload is None:
            raise RecordRejected(
                "claim_check", f"event {row.get('id')!r} of the claim check is not in the store"
            )
        data, meta = payload
        row["event_data"] = _parse(data, "event_data")
        del data
        row["event_metadata"] = _parse(meta, "event_metadata")
        return row

    async def _payload(self, event_id: object) -> tuple[bytes, bytes] | None:
        try:
            event_id = uuid.UUID(str(event_id))
        except ValueError:
            return None
        conn = await self._db.connection()
        async with conn.cursor(binary=True) as cur:
            await cur.execute(_PAYLOAD, (event_id,))
            row = await cur.fetchone()
        if row is None:
            return None
        return bytes(row[0]), bytes(row[1])


def _parse(text: bytes, what: str) -> Any:
    try:
        return loads(text)
    except (ValueError, RecursionError) as exc:
        raise RecordRejected("claim_check", f"{what} from the store: {exc}") from exc
