"""A second, independent reading of a ``domain_events`` tuple, for the tests only: every
column parsed to its Python type (uuids, ints, datetimes, JSON), the row printed with
orjson. The reader's own path (:mod:`replication.value_encoder`) copies bytes instead; the
tests check, over golden captures and generated rows, that both give the same Kafka value
and reject the same tuples. Production never runs this module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final, NamedTuple
from uuid import UUID

import orjson

from replication.errors import DecodeError
from replication.messages import Insert, Relation, TupleData
from replication.rows import (
    _BINARY_CONVERTERS as BINARY_CONVERTERS,
)
from replication.rows import (
    OID_BOOL,
    OID_INT4,
    OID_INT8,
    OID_JSON,
    OID_JSONB,
    OID_TEXT,
    OID_TIMESTAMPTZ,
    OID_UUID,
    OID_VARCHAR,
    JSONValue,
    PgValue,
    RelationCache,
    _json,
    match_columns,
    parse_timestamptz,
)

_ROW_KIND: Final = "domain_events row"


def _bool(raw: bytes) -> bool:
    if raw == b"t":
        return True
    if raw == b"f":
        return False
    raise ValueError(f"invalid boolean {raw!r}")


def _uuid(raw: bytes) -> UUID:
    # uuid.UUID(str) spends most of its time cleaning up the string; PostgreSQL prints
    # uuids as 36 chars of hex and dashes, so going through the int is ~30% faster
    # (uuids are two of the nine columns of every row). Anything else takes the
    # ordinary path, which rejects it with a clear message.
    digits = raw.replace(b"-", b"")
    if len(raw) == 36 and len(digits) == 32 and digits.isalnum():
        return UUID(int=int(digits, 16))
    return UUID(raw.decode())


_CONVERTERS: dict[int, Callable[[bytes], PgValue]] = {
    OID_BOOL: _bool,
    OID_INT4: int,
    OID_INT8: int,
    OID_TEXT: bytes.decode,
    OID_VARCHAR: bytes.decode,
    OID_UUID: _uuid,
    OID_JSON: _json,
    OID_JSONB: _json,
    OID_TIMESTAMPTZ: lambda raw: parse_timestamptz(raw.decode()),
}


def convert_text_value(type_oid: int, raw: bytes) -> PgValue:
    """Convert one column from PostgreSQL's text output format by its type OID."""
    converter = _CONVERTERS.get(type_oid)
    if converter is None:
        raise DecodeError(f"unsupported column type OID {type_oid}", kind=_ROW_KIND)
    try:
        return converter(raw)
    except DecodeError:
        raise
    except (ValueError, UnicodeDecodeError, orjson.JSONDecodeError) as exc:
        raise DecodeError(f"invalid value for type OID {type_oid}: {exc}", kind=_ROW_KIND) from exc


@dataclass(frozen=True, slots=True)
class DomainEventRow:
    """One row of ``domain_events``, as the Kafka value carries it."""

    id: UUID
    stream_id: UUID
    stream_type: str
    stream_version: int
    event_type: str
    event_data: JSONValue
    event_metadata: JSONValue
    idempotency_key: str | None
    created_at: datetime

    def to_json_bytes(self) -> bytes:
        """The Kafka value: a JSON object keyed by column name.

        UUIDs as strings, ``created_at`` as RFC 3339 with its offset, ``event_data`` and
        ``event_metadata`` embedded as JSON (not as strings holding JSON).
        """
        return orjson.dumps(
            {
                "id": self.id,
                "stream_id": self.stream_id,
                "stream_type": self.stream_type,
                "stream_version": self.stream_version,
                "event_type": self.event_type,
                "event_data": self.event_data,
                "event_metadata": self.event_metadata,
                "idempotency_key": self.idempotency_key,
                "created_at": self.created_at,
            }
        )


class _Step(NamedTuple):
    # A plain tuple underneath: unpacked in _row's loop without attribute lookups.
    field: str
    column: int  # index in the tuple
    convert: Callable[[bytes], PgValue]
    type_oid: int
    nullable: bool
    convert_binary: Callable[[bytes], PgValue]


def _plan(rel: Relation) -> tuple[_Step, ...]:
    """Match the relation's columns to row fields once; extra columns are ignored."""
    return tuple(
        _Step(field, index, _CONVERTERS[oid], oid, nullable, BINARY_CONVERTERS[oid])
        for field, index, oid, nullable in match_columns(rel)
    )


def _row(steps: tuple[_Step, ...], tup: TupleData) -> DomainEventRow:
    kinds = tup.kinds
    raws = tup.values
    ncols = len(kinds)
    values: list[PgValue] = []
    append = values.append
    for field, column, convert, type_oid, nullable, convert_binary in steps:
        if column >= ncols:
            raise DecodeError(f"missing required column {field!r}", kind=_ROW_KIND)
        raw = raws[column]
        kind = kinds[column]
        if raw is not None and kind in {"t", "b"}:
            try:
                append(convert(raw) if kind == "t" else convert_binary(raw))
            except DecodeError as exc:
                raise DecodeError(f"column {field!r}: {exc.reason}", kind=_ROW_KIND) from exc
            except (ValueError, UnicodeDecodeError) as exc:
                what = "value" if kind == "t" else "binary value"
                raise DecodeError(
                    f"column {field!r}: invalid {what} for type OID {type_oid}: {exc}",
                    kind=_ROW_KIND,
                ) from exc
        elif kind == "n" and nullable:
            append(None)
        elif kind == "n":
            raise DecodeError(f"required column {field!r} is NULL", kind=_ROW_KIND)
        else:
            # 'u' (unchanged TOAST) cannot occur in an Insert.
            raise DecodeError(
                f"column {field!r} has kind {kind!r}", kind=_ROW_KIND, expected="'t', 'b' or 'n'"
            )
    return DomainEventRow(*values)  # type: ignore[arg-type]  # types checked by _plan


def domain_event_from_tuple(rel: Relation, tup: TupleData) -> DomainEventRow:
    """Convert a ``domain_events`` tuple described by ``rel`` into a typed row."""
    return _row(_plan(rel), tup)


def domain_event(cache: RelationCache, msg: Insert) -> DomainEventRow:
    """The typed row of an Insert into ``domain_events`` (its relation from ``cache``)."""
    return domain_event_from_tuple(cache.get(msg.relation_id), msg.new)
