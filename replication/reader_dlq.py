"""The reader's dead letters: a row it truly cannot convert, set aside once, bounded.

Since jsonb is carried verbatim (:mod:`replication.value_encoder`), what is left here is a row
no JSON value can represent faithfully: invalid UTF-8 (a ``SQL_ASCII`` database), a
timestamp outside RFC 3339's years, a required column that is NULL. The dead-letter
value names the reason and position and holds the columns' text, each cut at
:data:`MAX_COLUMN_CHARS` (the full row stays in ``domain_events``, by id), so the copy
always fits the dead-letter topic.

A copy is sent only when :func:`~replication.deadletter_store.claim` says so (once per
position and reason). A send that fails for good leaves the table's row
``published = false`` and the stream goes on: the slot is never held behind one row.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Final

import orjson
import psycopg

from replication.deadletter_store import MAX_REASON, DeadLetter, claim, mark
from replication.errors import DecodeError
from replication.lsn import Position
from replication.messages import TupleData
from replication.ports import RecordProducer
from replication.rows import RelationCache, column_text

log = logging.getLogger(__name__)

READER_REASON_KIND: Final = "unconvertible_row"
MAX_COLUMN_CHARS: Final = 64 * 1024
SEND_ATTEMPTS: Final = 3
SEND_TIMEOUT: Final = 10.0


def _cut(text: str | None) -> str | None:
    if text is None or len(text) <= MAX_COLUMN_CHARS:
        return text
    return f"{text[:MAX_COLUMN_CHARS]}... ({len(text)} characters, cut)"


def reader_dead_letter_value(
    relations: RelationCache,
    *,
    pos: Position,
    xid: int,
    relation_id: int,
    tup: TupleData,
    exc: DecodeError,
) -> tuple[bytes, str, str | None]:
    """``(value, stream_id, event id)`` of the dead-letter copy of an unconvertible row."""
    try:
        relation = relations.get(relation_id)
        columns: dict[str, str | None] = {}
        for i, col in enumerate(relation.columns):
            try:
                columns[col.name] = _cut(column_text(col.type_oid, tup.kinds[i], tup.values[i]))
            except UnicodeDecodeError:
                raw = tup.values[i] or b""
                columns[col.name] = _cut(raw.decode(errors="replace"))
        table = f"{relation.namespace}.{relation.name}"
    except (DecodeError, IndexError):
        columns, table = {}, f"relation {relation_id}"
    value = orjson.dumps(
        {
            "reason": str(exc),
            "reason_kind": READER_REASON_KIND,
            "table": table,
            "commit_lsn": str(pos.commit_lsn),
            "idx": pos.idx,
            "xid": xid,
            "columns": columns,
        }
    )
    return value, columns.get("stream_id") or "", _uuid_or_none(columns.get("id"))


async def send_reader_dead_letter(
    dsn: str,
    letter: DeadLetter,
    producer: RecordProducer,
    topic: str,
    xid: int,
) -> str | None:
    """Record the dead letter, send its copy if not sent before; the error, or None.

    None also when it was dead-lettered before (nothing to do). The table's connection
    is opened for the occasion: rows the reader cannot convert are rare.
    """
    key = letter.dead_letter_key
    pos = letter.position
    headers = [
        ("reason", letter.reason[:MAX_REASON].encode()),
        ("reason_kind", letter.reason_kind.encode()),
        ("source", letter.source.encode()),
        ("commit_lsn", str(pos.commit_lsn if pos else "").encode()),
        ("idx", str(pos.idx if pos else "").encode()),
        ("xid", str(xid).encode()),
        ("dead_letter_key", key.encode()),
    ]
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        if not await claim(conn, letter):
            log.info(
                "row at %s was dead-lettered before (key=%s): not sent again", letter.position, key
            )
            return None
        error: str | None = "not attempted"
        for attempt in range(1, SEND_ATTEMPTS + 1):
            try:
                async with asyncio.timeout(SEND_TIMEOUT):
                    await producer.send_and_wait(
                        topic, letter.key or b"", letter.value or b"", headers
                    )
                error = None
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # bounded: every error ends in the failure below
                error = f"{type(exc).__name__}: {exc}"
                log.warning("dead letter key=%s: send attempt %d failed: %s", key, attempt, error)
                await asyncio.sleep(min(2.0 * attempt, 5.0))
        await mark(conn, key, published=error is None, error=error)
    if error is not None:
        log.error(
            "dead letter key=%s could NOT be sent to %s: %s; kept in pipeline_dead_letters "
            "(published=false), the slot moves on",
            key,
            topic,
            error,
        )
    return error


def _uuid_or_none(text: str | None) -> str | None:
    try:
        return str(uuid.UUID(text)) if text is not None else None
    except ValueError:
        return None
