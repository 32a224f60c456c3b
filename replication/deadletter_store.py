"""Dead letters once per (position, reason): the ``pipeline_dead_letters`` table (0008).

Both the reader (a row it cannot convert) and the agents (a record they reject) write a
row here BEFORE sending the dead-letter copy to Kafka, keyed by the event's position and
the kind of reason (:func:`dead_letter_key`). The insert is ``ON CONFLICT DO NOTHING``:

- a new row, or an existing one still ``published = false`` (an earlier send failed or
  the process died before marking it): the copy is sent, then marked published;
- an existing published row: the record was dead-lettered already (a redelivery, a
  restart, ``pipeline replay``), nothing is sent.

The one window left: the process dies after Kafka acknowledged the copy and before the
single-row ``UPDATE ... SET published = true`` committed. The record is then sent once
more on redelivery. Closing it would need the marker and the Kafka write in one
transaction, which PostgreSQL and Kafka cannot share; the window is one round trip to
PostgreSQL wide, both copies carry the same ``dead_letter_key`` header (a consumer of
the dead-letter topic can drop the second), and the table, which ``pipeline
dead-letters`` reads, still holds one row.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import orjson
import psycopg
from psycopg.rows import TupleRow

from replication.lsn import Position

MAX_REASON: Final = 2000

_CLAIM: Final = (
    "INSERT INTO pipeline_dead_letters (dead_letter_key, commit_lsn, idx, reason_kind, "
    "reason, source, event_id, original_topic, original_partition, original_offset, "
    "record_key, record_value, record_headers) "
    "VALUES (%s, %s::pg_lsn, %s, %s, %s, %s, %s::uuid, %s, %s, %s, %s, %s, %s::jsonb) "
    "ON CONFLICT (dead_letter_key) DO NOTHING RETURNING published"
)
_PUBLISHED: Final = "SELECT published FROM pipeline_dead_letters WHERE dead_letter_key = %s"
_MARK: Final = (
    "UPDATE pipeline_dead_letters SET published = %s, attempts = attempts + 1, "
    "last_error = %s WHERE dead_letter_key = %s"
)


def dead_letter_key(position: Position | None, reason_kind: str, where: str = "") -> str:
    """The identity of a dead letter: the event's position and the kind of reason.

    ``where`` (``topic[p]@offset``) stands in for a record without a position, which
    only a producer other than the reader can write.
    """
    if position is None:
        return f"{where}/{reason_kind}"
    return f"{position.commit_lsn}/{position.idx}/{reason_kind}"


def encode_headers(headers: Sequence[tuple[str, bytes]]) -> str:
    """Record headers as JSON ``[[name, base64], ...]`` (header values are bytes)."""
    return orjson.dumps(
        [[name, base64.b64encode(value).decode()] for name, value in headers]
    ).decode()


def decode_headers(stored: object) -> list[tuple[str, bytes]]:
    """The inverse of :func:`encode_headers` (psycopg hands jsonb back parsed)."""
    if not isinstance(stored, list):
        return []
    return [(str(name), base64.b64decode(str(value))) for name, value in stored]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead letter, as stored (and as sent, with ``headers``)."""

    position: Position | None
    reason_kind: str
    reason: str
    source: str
    where: str = ""
    event_id: str | None = None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    key: bytes | None = None
    value: bytes | None = None
    headers: Sequence[tuple[str, bytes]] = field(default_factory=tuple)

    @property
    def dead_letter_key(self) -> str:
        """See :func:`dead_letter_key`."""
        return dead_letter_key(self.position, self.reason_kind, self.where)


async def claim(conn: psycopg.AsyncConnection[TupleRow], letter: DeadLetter) -> bool:
    """Record the dead letter if new; True when its Kafka copy is still to be sent."""
    pos = letter.position
    cur = await conn.execute(
        _CLAIM,
        (
            letter.dead_letter_key,
            str(pos.commit_lsn) if pos is not None else None,
            pos.idx if pos is not None else None,
            letter.reason_kind,
            letter.reason[:MAX_REASON],
            letter.source,
            letter.event_id,
            letter.topic,
            letter.partition,
            letter.offset,
            letter.key,
            letter.value,
            encode_headers(letter.headers),
        ),
    )
    row = await cur.fetchone()
    if row is not None:
        return True  # inserted now
    cur = await conn.execute(_PUBLISHED, (letter.dead_letter_key,))
    existing = await cur.fetchone()
    return existing is None or not existing[0]


async def mark(
    conn: psycopg.AsyncConnection[TupleRow], key: str, *, published: bool, error: str | None = None
) -> None:
    """Record the outcome of a send: published, or the error it failed with."""
    await conn.execute(_MARK, (published, error[:MAX_REASON] if error else None, key))
