"""Turn pgoutput tuples of ``domain_events`` into typed rows, and rows into Kafka values.

pgoutput sends every column in PostgreSQL's *text* output format (kind ``'t'``), or, when
the reader asked for ``binary 'true'`` (PostgreSQL 14+), in each type's binary send
format (kind ``'b'``); conversion is by the column's type OID from the Relation message,
with one converter per format. A type without a binary converter here is a
:class:`~replication.errors.DecodeError` naming it, never a guess. The Relation is cached per relation
id (:class:`RelationCache`) together with a precomputed plan (which tuple index feeds
which row field), so converting a row does no name lookups on the hot path.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, NamedTuple, TypeAlias
from uuid import UUID

import orjson

from replication.errors import DecodeError, UnknownRelationError
from replication.messages import PG_EPOCH, Insert, Relation, TupleData

JSONValue: TypeAlias = bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"] | None
PgValue: TypeAlias = bool | int | str | UUID | datetime | JSONValue | None

OID_BOOL: Final = 16
OID_INT8: Final = 20
OID_INT4: Final = 23
OID_TEXT: Final = 25
OID_JSON: Final = 114
OID_VARCHAR: Final = 1043
OID_TIMESTAMPTZ: Final = 1184
OID_UUID: Final = 2950
OID_JSONB: Final = 3802

_ROW_KIND: Final = "domain_events row"


def parse_timestamptz(text: str) -> datetime:
    """Parse PostgreSQL's ISO text output of a timestamptz, e.g. ``2026-11-26 03:00:32.25+00``.

    Keeps the offset PostgreSQL printed (the session TimeZone), except offsets with
    seconds (historical local mean time, ``+00:53:28``) which RFC 3339 cannot express:
    those are converted to UTC. ``infinity`` and BC dates have no datetime and raise.
    """
    if text.endswith(" BC") or text.endswith("infinity"):
        raise DecodeError(f"timestamptz {text!r} cannot be represented", kind=_ROW_KIND)
    try:
        # 3.11's fromisoformat reads PostgreSQL's ISO style: space separator, 0-6
        # fractional digits, offsets as +HH, +HH:MM or +HH:MM:SS.
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise DecodeError(f"invalid timestamptz {text!r}", kind=_ROW_KIND) from exc
    offset = value.utcoffset()
    if offset is None:
        raise DecodeError(f"timestamptz {text!r} has no UTC offset", kind=_ROW_KIND)
    if offset.seconds % 60 or offset.microseconds:
        value = value.astimezone(UTC)
    return value


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


def _json(raw: bytes) -> JSONValue:
    value: JSONValue = orjson.loads(raw)
    return value


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


# -- binary send formats (pgoutput ``binary 'true'``) -------------------------------------

_I32: Final = struct.Struct(">i")
_I64: Final = struct.Struct(">q")
# timestamp_send's +-infinity (DT_NOBEGIN, DT_NOEND).
_TS_NOBEGIN: Final = -(1 << 63)
_TS_NOEND: Final = (1 << 63) - 1


def binary_int4(raw: bytes) -> int:
    """int4send: 4 bytes, big-endian, signed."""
    if len(raw) != 4:
        raise ValueError(f"int4 needs 4 bytes, got {len(raw)}")
    value: int = _I32.unpack(raw)[0]
    return value


def binary_int8(raw: bytes) -> int:
    """int8send: 8 bytes, big-endian, signed."""
    if len(raw) != 8:
        raise ValueError(f"int8 needs 8 bytes, got {len(raw)}")
    value: int = _I64.unpack(raw)[0]
    return value


def binary_uuid(raw: bytes) -> UUID:
    """uuid_send: the 16 bytes."""
    if len(raw) != 16:
        raise ValueError(f"uuid needs 16 bytes, got {len(raw)}")
    return UUID(bytes=raw)


def binary_jsonb_text(raw: bytes) -> bytes:
    """jsonb_send: a version byte (1) then the same text jsonb_out prints."""
    if raw[:1] != b"\x01":
        raise ValueError(f"unsupported jsonb binary version {raw[:1]!r}")
    return raw[1:]


def binary_timestamptz_us(raw: bytes) -> int:
    """timestamptz_send: microseconds since 2000-01-01 00:00 UTC, int64; infinity refused."""
    if len(raw) != 8:
        raise ValueError(f"timestamptz needs 8 bytes, got {len(raw)}")
    us: int = _I64.unpack(raw)[0]
    if us in (_TS_NOBEGIN, _TS_NOEND):
        raise DecodeError(
            f"timestamptz {'-' if us < 0 else ''}infinity cannot be represented", kind=_ROW_KIND
        )
    return us


def binary_timestamptz(raw: bytes) -> datetime:
    """The instant, in UTC (the binary format has no session time zone)."""
    us = binary_timestamptz_us(raw)
    try:
        return PG_EPOCH + timedelta(microseconds=us)
    except OverflowError as exc:
        raise DecodeError(f"timestamptz {us} us cannot be represented", kind=_ROW_KIND) from exc


def _binary_bool(raw: bytes) -> bool:
    if raw == b"\x01":
        return True
    if raw == b"\x00":
        return False
    raise ValueError(f"invalid boolean {raw!r}")


_BINARY_CONVERTERS: dict[int, Callable[[bytes], PgValue]] = {
    OID_BOOL: _binary_bool,
    OID_INT4: binary_int4,
    OID_INT8: binary_int8,
    OID_TEXT: bytes.decode,  # textsend: the text in the client encoding (UTF8)
    OID_VARCHAR: bytes.decode,
    OID_UUID: binary_uuid,
    OID_JSON: _json,  # json_send: the text as stored
    OID_JSONB: lambda raw: _json(binary_jsonb_text(raw)),
    OID_TIMESTAMPTZ: binary_timestamptz,
}


def convert_binary_value(type_oid: int, raw: bytes) -> PgValue:
    """Convert one column from its type's binary send format by its type OID."""
    converter = _BINARY_CONVERTERS.get(type_oid)
    if converter is None:
        raise DecodeError(
            f"unsupported column type OID {type_oid} in binary format", kind=_ROW_KIND
        )
    try:
        return converter(raw)
    except DecodeError:
        raise
    except (ValueError, UnicodeDecodeError, orjson.JSONDecodeError) as exc:
        raise DecodeError(
            f"invalid binary value for type OID {type_oid}: {exc}", kind=_ROW_KIND
        ) from exc


def column_text(type_oid: int, kind: str, raw: bytes | None) -> str | None:
    """A column as readable text, for the dead-letter record: text columns as sent,
    binary ones converted when the type is known, else their bytes in hex (``\\x...``)."""
    if raw is None:
        return None
    if kind != "b":
        return raw.decode(errors="replace")
    try:
        value = convert_binary_value(type_oid, raw)
    except DecodeError:
        return "\\x" + raw.hex()
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    return str(value)


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


# Row field -> (type OIDs accepted for it, nullable). Order is DomainEventRow's.
_FIELDS: tuple[tuple[str, frozenset[int], bool], ...] = (
    ("id", frozenset({OID_UUID}), False),
    ("stream_id", frozenset({OID_UUID}), False),
    ("stream_type", frozenset({OID_TEXT, OID_VARCHAR}), False),
    ("stream_version", frozenset({OID_INT4, OID_INT8}), False),
    ("event_type", frozenset({OID_TEXT, OID_VARCHAR}), False),
    ("event_data", frozenset({OID_JSONB, OID_JSON}), False),
    ("event_metadata", frozenset({OID_JSONB, OID_JSON}), False),
    ("idempotency_key", frozenset({OID_TEXT, OID_VARCHAR}), True),
    ("created_at", frozenset({OID_TIMESTAMPTZ}), False),
)


class _Step(NamedTuple):
    # A plain tuple underneath: unpacked in _row's loop without attribute lookups.
    field: str
    column: int  # index in the tuple
    convert: Callable[[bytes], PgValue]
    type_oid: int
    nullable: bool
    convert_binary: Callable[[bytes], PgValue]


def match_columns(rel: Relation) -> list[tuple[str, int, int, bool]]:
    """(field, column index, type OID, nullable) of each row field, matched by name once.

    Extra columns are ignored; a missing column or one of an unexpected type is a
    DecodeError naming it.
    """
    by_name = {col.name: (i, col.type_oid) for i, col in enumerate(rel.columns)}
    matched = []
    for field, oids, nullable in _FIELDS:
        found = by_name.get(field)
        if found is None:
            raise DecodeError(
                f"relation {rel.namespace}.{rel.name} has no column {field!r}", kind=_ROW_KIND
            )
        index, oid = found
        if oid not in oids:
            raise DecodeError(
                f"column {field!r} has type OID {oid}",
                kind=_ROW_KIND,
                expected=f"one of {sorted(oids)}",
            )
        matched.append((field, index, oid, nullable))
    return matched


def _plan(rel: Relation) -> tuple[_Step, ...]:
    """Match the relation's columns to row fields once; extra columns are ignored."""
    return tuple(
        _Step(field, index, _CONVERTERS[oid], oid, nullable, _BINARY_CONVERTERS[oid])
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


class RelationCache:
    """Relation messages by relation id, with a row-conversion plan for each.

    pgoutput sends a Relation before the first change to a table in each session and
    again whenever the table's definition changes, so ``add`` simply replaces.
    """

    __slots__ = ("_plans", "_relations")

    def __init__(self) -> None:
        self._relations: dict[int, Relation] = {}
        self._plans: dict[int, tuple[_Step, ...]] = {}

    def add(self, rel: Relation) -> None:
        """Remember (or replace) a relation; its plan is built on first use."""
        self._relations[rel.relation_id] = rel
        self._plans.pop(rel.relation_id, None)

    def get(self, relation_id: int) -> Relation:
        """The relation for ``relation_id``; raises UnknownRelationError if never added."""
        rel = self._relations.get(relation_id)
        if rel is None:
            raise UnknownRelationError(
                f"no Relation message seen for relation id {relation_id}",
                kind="Insert",
                expected="a Relation message before the first change",
            )
        return rel

    def __contains__(self, relation_id: object) -> bool:
        return relation_id in self._relations

    def __len__(self) -> int:
        return len(self._relations)

    def domain_event(self, msg: Insert) -> DomainEventRow:
        """Convert an Insert into ``domain_events`` to a typed row, using the cached plan."""
        steps = self._plans.get(msg.relation_id)
        if steps is None:
            steps = self._plans[msg.relation_id] = _plan(self.get(msg.relation_id))
        return _row(steps, msg.new)
