"""The ``domain_events`` relation as the reader sees it: its Relation messages by id
(:class:`RelationCache`), which column feeds which field of the Kafka value
(:func:`match_columns`), and the column formats both paths share.

pgoutput sends every column in PostgreSQL's *text* output format (kind ``'t'``), or, when
the reader asked for ``binary 'true'`` (PostgreSQL 14+), in each type's binary send
format (kind ``'b'``). The Kafka value itself is built by :mod:`replication.value_encoder`;
here are the parsers it falls back on (:func:`parse_timestamptz`, the binary layouts) and
:func:`column_text`, a column as readable text for the dead-letter record. A type
without a binary converter here is a :class:`~replication.errors.DecodeError` naming it,
never a guess.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final, TypeAlias
from uuid import UUID

import orjson

from replication.errors import DecodeError, UnknownRelationError
from replication.messages import PG_EPOCH, Relation

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


def _json(raw: bytes) -> JSONValue:
    value: JSONValue = orjson.loads(raw)
    return value


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


# Value field -> (type OIDs accepted for it, nullable), in the Kafka value's order.
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


class RelationCache:
    """Relation messages by relation id, with a row-conversion plan for each.

    pgoutput sends a Relation before the first change to a table in each session and
    again whenever the table's definition changes, so ``add`` simply replaces.
    """

    __slots__ = ("_relations",)

    def __init__(self) -> None:
        self._relations: dict[int, Relation] = {}

    def add(self, rel: Relation) -> None:
        """Remember (or replace) a relation (:class:`~replication.value_encoder.ValueEncoder`
        builds a new plan when the relation it planned for is replaced)."""
        self._relations[rel.relation_id] = rel

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
