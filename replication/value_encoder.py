"""Kafka values built straight from pgoutput's columns, without typed rows in between.

Parsing every column (uuids, jsonb, the timestamp) only to print it again would be
wasted work: most of PostgreSQL's text output is already what the JSON value needs: a uuid prints as the canonical string,
an integer as a JSON number, and jsonb's output is JSON. So the value is assembled from
the column bytes, validated where it must be:

- jsonb is embedded as PostgreSQL printed it, never parsed. Its output is valid JSON
  (strings escaped, no NaN, numbers in plain notation), so the value, parsed with
  arbitrary-precision numbers and no depth limit, is the row PostgreSQL holds: nesting
  past 1024 levels and numbers past a double's range (which orjson cannot read, and
  for which the reader used to dead-letter the row) travel unchanged; consumers choose
  a parser that reads them (:mod:`pipeline.agents.records`). Only its UTF-8 is checked,
  in bounded chunks for a large document. ``json`` columns (kept verbatim by
  PostgreSQL, duplicate keys and all) take the careful path of ``rows``.
- text is JSON-escaped by orjson; uuids and integers are checked for their canonical
  form and copied.
- timestamptz is rewritten to RFC 3339 (``T`` separator, 6 fraction digits, ``+HH:MM``
  offset: exactly what orjson prints for the datetime). What the fast pattern does not
  cover (BC, infinity, offsets with seconds, years past 9999) goes through
  :func:`~replication.rows.parse_timestamptz`, which converts or raises
  :class:`~replication.errors.DecodeError` as before (the row is dead-lettered).

In binary mode (pgoutput ``binary 'true'``, kind ``'b'`` columns) each type's send
format is converted instead: a uuid's 16 bytes are printed in the canonical form,
integers are unpacked, text is the same UTF-8, jsonb is the same text after its version
byte, and a timestamptz (int64 microseconds since 2000-01-01 UTC) is printed in UTC with
``+00:00``, as orjson prints the UTC datetime. Every type the plan accepts has both
converters (a unit test checks that), so an unknown type is refused when the plan is
built, never encoded by guess.

The result is equal, once parsed, to the same row read column by column into Python
values and printed by orjson (tests/unit/row_oracle.py; tests/unit/replication/test_values.py checks
that over generated rows and the golden captures), and the key is the
bytes of ``str(stream_id)``, so every key maps to the partition it always did.
"""

from __future__ import annotations

import codecs
import re
import struct
from binascii import hexlify
from collections.abc import Callable
from typing import Final, NamedTuple
from uuid import UUID

import orjson

from replication.errors import DecodeError
from replication.frame_loop import CommitTimeText
from replication.messages import Relation, TupleData
from replication.record_value import (
    CLAIM_CHECK_BYTES,
    assemble,
    event_type_bytes,
    join_fields,
    join_reference,
)
from replication.rows import (
    OID_INT4,
    OID_INT8,
    OID_JSON,
    OID_JSONB,
    OID_TEXT,
    OID_TIMESTAMPTZ,
    OID_UUID,
    OID_VARCHAR,
    RelationCache,
    binary_jsonb_text,
    binary_timestamptz_us,
    match_columns,
    parse_timestamptz,
)

_ROW_KIND: Final = "domain_events row"

# UTF-8 of a large document is checked in chunks of this size (no copy of the whole).
_UTF8_CHUNK: Final = 1 << 20
_PAYLOAD_FIELDS: Final = frozenset({"event_data", "event_metadata"})
_UUID: Final = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# PostgreSQL's ISO DateStyle output of a timestamptz with a whole-minute offset.
_TIMESTAMPTZ: Final = re.compile(
    rb"(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)(\.\d{1,6})?([+-]\d\d)(:\d\d)?"
)


def uuid_json(raw: bytes) -> bytes:
    """A uuid column as the inside of a JSON string (canonical lowercase form)."""
    if _UUID.fullmatch(raw) is not None:
        return raw
    return str(UUID(raw.decode())).encode()  # not what PostgreSQL prints; normalise or raise


def int_json(raw: bytes) -> bytes:
    """An int4/int8 column as a JSON number."""
    digits = raw[1:] if raw[:1] == b"-" else raw
    if digits.isdigit() and (digits[:1] != b"0" or len(digits) == 1):
        return raw
    return b"%d" % int(raw)  # raises ValueError on anything that is no integer


def text_json(raw: bytes) -> bytes:
    """A text/varchar column as a JSON string."""
    return orjson.dumps(raw.decode())


def check_utf8(raw: bytes) -> None:
    """Raise UnicodeDecodeError unless raw is UTF-8, without decoding a large raw at once."""
    if raw.isascii():
        return
    if len(raw) <= _UTF8_CHUNK:
        raw.decode()
        return
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(raw)
    for start in range(0, len(raw), _UTF8_CHUNK):
        decoder.decode(view[start : start + _UTF8_CHUNK])
    decoder.decode(b"", final=True)


def jsonb_json(raw: bytes) -> bytes:
    """A jsonb column, embedded as printed, never parsed (see the module docstring)."""
    check_utf8(raw)
    return raw


def json_json(raw: bytes) -> bytes:
    """A json column: parsed and printed again (its text is the client's, verbatim)."""
    return orjson.dumps(orjson.loads(raw))


def timestamptz_json(raw: bytes) -> bytes:
    """A timestamptz column as a JSON string in RFC 3339, as orjson prints a datetime."""
    m = _TIMESTAMPTZ.fullmatch(raw)
    if m is None:
        return orjson.dumps(parse_timestamptz(raw.decode()))
    date, time, fraction, hours, minutes = m.groups()
    return b'"%sT%s%s%s%s"' % (
        date,
        time,
        fraction.ljust(7, b"0") if fraction else b"",
        hours,
        minutes or b":00",
    )


_I32: Final = struct.Struct(">i")
_I64: Final = struct.Struct(">q")


def binary_uuid_json(raw: bytes) -> bytes:
    """uuid_send's 16 bytes as the inside of a JSON string (canonical lowercase form)."""
    if len(raw) != 16:
        raise ValueError(f"uuid needs 16 bytes, got {len(raw)}")
    # Hex in groups of 4 digits (xxxx-xxxx-...-xxxx), then 8-4-4-4-12 by dropping 3 dashes.
    h = hexlify(raw, b"-", 2)
    return h[:4] + h[5:29] + h[30:34] + h[35:]


def binary_int4_json(raw: bytes) -> bytes:
    """int4send (4 bytes, big-endian) as a JSON number."""
    if len(raw) != 4:
        raise ValueError(f"int4 needs 4 bytes, got {len(raw)}")
    return b"%d" % _I32.unpack(raw)[0]


def binary_int8_json(raw: bytes) -> bytes:
    """int8send (8 bytes, big-endian) as a JSON number."""
    if len(raw) != 8:
        raise ValueError(f"int8 needs 8 bytes, got {len(raw)}")
    return b"%d" % _I64.unpack(raw)[0]


def binary_jsonb_json(raw: bytes) -> bytes:
    """jsonb_send: version byte 1, then jsonb's text output (embedded as in text mode)."""
    return jsonb_json(binary_jsonb_text(raw))


class BinaryTimestamptzJson:
    """timestamptz_send (int64 microseconds since 2000-01-01 UTC) as a JSON string in UTC.

    Remembers the last second's text, as the commit_ts header does: a backlog's rows
    were created many per second.
    """

    __slots__ = ("_text",)

    def __init__(self) -> None:
        self._text = CommitTimeText()

    def __call__(self, raw: bytes) -> bytes:
        us = binary_timestamptz_us(raw)
        try:
            text = self._text(us)
        except ValueError as exc:  # before year 1 or after 9999
            raise DecodeError(f"timestamptz {us} us cannot be represented", kind=_ROW_KIND) from exc
        return b'"%s"' % text


_ENCODERS: dict[int, Callable[[bytes], bytes]] = {
    OID_UUID: uuid_json,
    OID_INT4: int_json,
    OID_INT8: int_json,
    OID_TEXT: text_json,
    OID_VARCHAR: text_json,
    OID_JSONB: jsonb_json,
    OID_JSON: json_json,
    OID_TIMESTAMPTZ: timestamptz_json,
}

_BINARY_ENCODERS: dict[int, Callable[[bytes], bytes]] = {
    OID_UUID: binary_uuid_json,
    OID_INT4: binary_int4_json,
    OID_INT8: binary_int8_json,
    OID_TEXT: text_json,  # textsend: the UTF-8 text itself
    OID_VARCHAR: text_json,
    OID_JSONB: binary_jsonb_json,
    OID_JSON: json_json,  # json_send: the text as stored
    OID_TIMESTAMPTZ: BinaryTimestamptzJson(),
}


class _Step(NamedTuple):
    field: str
    column: int
    encode: Callable[[bytes], bytes]
    type_oid: int
    nullable: bool
    encode_binary: Callable[[bytes], bytes]


def _plan(rel: Relation) -> tuple[_Step, ...]:
    """Match the relation's columns to the value's fields once; extra columns are ignored."""
    return tuple(
        _Step(field, index, _ENCODERS[oid], oid, nullable, _BINARY_ENCODERS[oid])
        for field, index, oid, nullable in match_columns(rel)
    )


def _parts(steps: tuple[_Step, ...], tup: TupleData) -> list[bytes]:
    kinds = tup.kinds
    raws = tup.values
    ncols = len(kinds)
    parts: list[bytes] = []
    for field, column, encode, type_oid, nullable, encode_binary in steps:
        if column >= ncols:
            raise DecodeError(f"missing required column {field!r}", kind=_ROW_KIND)
        raw = raws[column]
        kind = kinds[column]
        if raw is not None and kind in {"t", "b"}:
            try:
                parts.append(encode(raw) if kind == "t" else encode_binary(raw))
            except DecodeError as exc:
                raise DecodeError(f"column {field!r}: {exc.reason}", kind=_ROW_KIND) from exc
            except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
                what = "value" if kind == "t" else "binary value"
                raise DecodeError(
                    f"column {field!r}: invalid {what} for type OID {type_oid}: {exc}",
                    kind=_ROW_KIND,
                ) from exc
        elif kind == "n" and nullable:
            parts.append(b"null")
        elif kind == "n":
            raise DecodeError(f"required column {field!r} is NULL", kind=_ROW_KIND)
        else:
            # 'u' (unchanged TOAST) cannot occur in an Insert.
            raise DecodeError(
                f"column {field!r} has kind {kind!r}", kind=_ROW_KIND, expected="'t', 'b' or 'n'"
            )
    return parts


# Where the event_type field is among the nine parts (see record_value.join_fields).
_EVENT_TYPE: Final = 4


def _encode(steps: tuple[_Step, ...], tup: TupleData) -> tuple[bytes, bytes, bytes]:
    parts = _parts(steps, tup)
    return parts[1], join_fields(parts), event_type_bytes(parts[_EVENT_TYPE])


def _skip(raw: bytes) -> bytes:
    return b""


def _without_payload(steps: tuple[_Step, ...]) -> tuple[_Step, ...]:
    """The plan with event_data and event_metadata left out (a claim check's fields)."""
    return tuple(
        _Step(s.field, s.column, _skip, s.type_oid, s.nullable, _skip)
        if s.field in _PAYLOAD_FIELDS
        else s
        for s in steps
    )


def _encode_sized(steps: tuple[_Step, ...], tup: TupleData) -> tuple[bytes, bytes, bytes, bool]:
    # A payload whose raw bytes alone pass the limit is a claim check whatever the rest:
    # it is never encoded (no copy of a 200 MB document, no UTF-8 pass over it).
    raws = tup.values
    payload = 0
    for s in steps:
        if s.field in _PAYLOAD_FIELDS and s.column < len(raws):
            raw = raws[s.column]
            payload += len(raw) if raw is not None else 0
    if payload > CLAIM_CHECK_BYTES:
        parts = _parts(_without_payload(steps), tup)
        return parts[1], join_reference(parts), event_type_bytes(parts[_EVENT_TYPE]), True
    parts = _parts(steps, tup)
    value, claim_checked = assemble(parts)
    return parts[1], value, event_type_bytes(parts[_EVENT_TYPE]), claim_checked


class ValueEncoder:
    """Kafka key and value of an Insert into ``domain_events``, with a plan per relation.

    Reads relations from a :class:`~replication.rows.RelationCache`; a plan is rebuilt
    when the cache holds a new Relation message for the id (the table changed).
    """

    __slots__ = ("_plans", "_relations")

    def __init__(self, relations: RelationCache) -> None:
        self._relations = relations
        self._plans: dict[int, tuple[Relation, tuple[_Step, ...]]] = {}

    def encode(self, relation_id: int, tup: TupleData) -> tuple[bytes, bytes, bytes]:
        """``(key, value, event_type)``: the stream_id's text, the row as JSON, and the
        event type's UTF-8 bytes (the value of the ``event_type`` header).

        Raises :class:`~replication.errors.DecodeError` for a row that cannot be
        represented (the caller dead-letters it), naming the column.
        """
        rel = self._relations.get(relation_id)
        entry = self._plans.get(relation_id)
        if entry is None or entry[0] is not rel:
            entry = self._plans[relation_id] = (rel, _plan(rel))
        return _encode(entry[1], tup)

    def encode_sized(self, relation_id: int, tup: TupleData) -> tuple[bytes, bytes, bytes, bool]:
        """``(key, value, event_type, claim_check)``: as :meth:`encode`, except that an event above
        :data:`CLAIM_CHECK_BYTES` gets the claim-check value (no event_data,
        event_metadata) and True; the full value is never built for it."""
        rel = self._relations.get(relation_id)
        entry = self._plans.get(relation_id)
        if entry is None or entry[0] is not rel:
            entry = self._plans[relation_id] = (rel, _plan(rel))
        return _encode_sized(entry[1], tup)
