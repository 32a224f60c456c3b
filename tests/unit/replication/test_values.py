"""Kafka values built from text columns (value_encoder.py) against the typed-row path (rows.py).

The contract: for every tuple, ``orjson.loads`` of the fast value equals ``orjson.loads``
of ``DomainEventRow.to_json_bytes()``, the key is ``str(stream_id)``, and a tuple the
row path rejects is rejected too (the reader dead-letters it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replication.decoder import Insert, Relation, decode_pgoutput
from replication.errors import DecodeError
from replication.rows import RelationCache
from replication.value_encoder import (
    ValueEncoder,
    int_json,
    jsonb_json,
    timestamptz_json,
    uuid_json,
)
from tests.unit import pgoutput_builder as b
from tests.unit.pgoutput_fixtures import (
    RELID,
    domain_event_inserts,
    domain_events_cache,
    domain_events_insert,
)
from tests.unit.row_oracle import domain_event

COLS = b.DOMAIN_EVENTS_COLUMNS
_cache = domain_events_cache
_insert = domain_events_insert


def both(cache: RelationCache, msg: Insert) -> tuple[tuple[bytes, bytes, bytes] | str, bytes | str]:
    """(key, value, event type) of the fast path and the row path's value, or the
    DecodeError text."""
    try:
        row = domain_event(cache, msg)
        slow: bytes | str = row.to_json_bytes()
    except DecodeError as exc:
        slow = str(exc)
    try:
        fast: tuple[bytes, bytes, bytes] | str = ValueEncoder(cache).encode(
            msg.relation_id, msg.new
        )
    except DecodeError as exc:
        fast = str(exc)
    return fast, slow


def assert_same(cache: RelationCache, msg: Insert) -> None:
    fast, slow = both(cache, msg)
    if isinstance(slow, str):
        # Rejected, naming the same column (the detail may come from another parser).
        assert isinstance(fast, str), (fast, slow)
        assert fast.split(":")[:2] == slow.split(":")[:2]
        return
    assert not isinstance(fast, str), fast
    key, value, event_type = fast
    expected = orjson.loads(slow)
    assert orjson.loads(value) == expected
    assert list(orjson.loads(value)) == list(expected)  # same keys, same order
    assert key == str(expected["stream_id"]).encode()
    assert event_type == expected["event_type"].encode()  # the event_type header's value


def pg_timestamptz(value: datetime) -> str:
    """PostgreSQL's ISO output: space separator, trimmed fraction, +HH or +HH:MM."""
    text = value.strftime("%Y-%m-%d %H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    offset = value.utcoffset()
    assert offset is not None
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hh, mm = divmod(abs(minutes), 60)
    return f"{text}{sign}{hh:02d}" + (f":{mm:02d}" if mm else "")


def pg_jsonb(value: object) -> str:
    """A JSON text in jsonb's output style (", " and ": " separators, UTF-8 as is)."""
    return json.dumps(value, ensure_ascii=False)


# --- single columns -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-26 03:00:32.258123+00", "2026-11-26T03:00:32.258123+00:00"),
        ("2026-11-26 03:00:32+00", "2026-11-26T03:00:32+00:00"),
        ("2026-11-26 08:30:32.25+05:30", "2026-11-26T08:30:32.250000+05:30"),
        ("2026-11-25 19:00:32-03", "2026-11-25T19:00:32-03:00"),
        ("0099-01-01 00:00:00+00", "0099-01-01T00:00:00+00:00"),
        # An offset with seconds (local mean time) becomes UTC, as in rows.py.
        ("1850-01-01 00:00:00+00:53:28", "1849-12-31T23:06:32+00:00"),
    ],
)
def test_timestamptz_json(text: str, expected: str) -> None:
    assert orjson.loads(timestamptz_json(text.encode())) == expected


@pytest.mark.parametrize(
    "text", ["infinity", "-infinity", "2026-11-26 03:00:32+00 BC", "10000-01-01 00:00:00+00"]
)
def test_timestamptz_json_rejects_what_rfc3339_cannot_say(text: str) -> None:
    with pytest.raises((DecodeError, ValueError)):
        timestamptz_json(text.encode())


def test_uuid_json_normalises_non_canonical_text() -> None:
    canonical = b"0b9a0d8e-6f7b-4c39-9d0e-1c4a2b3c4d5e"
    assert uuid_json(canonical) is canonical
    assert uuid_json(canonical.upper()) == canonical
    with pytest.raises(ValueError):
        uuid_json(b"not-a-uuid")


@pytest.mark.parametrize(("raw", "out"), [(b"0", b"0"), (b"-12", b"-12"), (b"007", b"7")])
def test_int_json(raw: bytes, out: bytes) -> None:
    assert int_json(raw) == out


def test_int_json_rejects_non_integers() -> None:
    with pytest.raises(ValueError):
        int_json(b"1.5")


def test_jsonb_json_embeds_what_postgresql_printed_without_parsing() -> None:
    short = b'{"a": [1, 2, {"b": null}]}'
    assert jsonb_json(short) is short
    # What orjson cannot read travels unchanged (issue 13): deep nesting, huge numbers.
    deep = b"[" * 1100 + b"]" * 1100
    assert jsonb_json(deep) is deep
    huge = b"1" + b"0" * 400
    assert jsonb_json(huge) is huge
    with pytest.raises(UnicodeDecodeError):
        jsonb_json(b'"\xff"')
    with pytest.raises(UnicodeDecodeError):  # checked in chunks when large
        jsonb_json(b'"' + "é".encode() * 600_000 + b'\xff"')


# --- whole rows ----------------------------------------------------------------------------


def test_sample_row_matches() -> None:
    cache = _cache()
    msg = _insert(b.domain_event_tuple())
    assert_same(cache, msg)
    key, value, _ = ValueEncoder(cache).encode(RELID, msg.new)
    assert key == b"1c9a0d8e-6f7b-4c39-9d0e-1c4a2b3c4d5f"
    assert value.startswith(b'{"id":"0b9a0d8e-6f7b-4c39-9d0e-1c4a2b3c4d5e","stream_id":')


@pytest.mark.parametrize(
    "overrides",
    [
        {"idempotency_key": None},
        {"created_at": "infinity"},
        {"created_at": "2026-11-26 03:00:32+00 BC"},
        {"stream_version": "x"},
        {"event_data": None},
        {"stream_id": "nope"},
        {"event_type": b"\xff\xfe"},
        {"event_data": '{"a": "\ud800"}'.encode("utf-8", "surrogatepass")},
        {"event_data": b'{"a": "b"}\xff'},
        {"event_data": b.UNCHANGED},
        {"event_data": ("b", b"\x00")},
    ],
)
def test_edge_rows_match_or_fail_alike(overrides: dict[str, object]) -> None:
    assert_same(_cache(), _insert(b.domain_event_tuple(**overrides)))


def test_jsonb_is_trusted_as_postgresql_printed_it() -> None:
    # jsonb output is JSON by construction, at any length: never parsed by the reader.
    encoder = ValueEncoder(_cache())
    _, value, _ = encoder.encode(RELID, _insert(b.domain_event_tuple(event_data="[1, 2]")).new)
    assert orjson.loads(value)["event_data"] == [1, 2]
    long = "[" + "1, " * 200 + "1]"
    _, value, _ = encoder.encode(RELID, _insert(b.domain_event_tuple(event_data=long)).new)
    assert orjson.loads(value)["event_data"] == [1] * 201


def test_missing_and_mistyped_columns_fail_alike() -> None:
    shorter = _cache()
    assert_same(shorter, _insert(b.tuple_data("0b9a0d8e-6f7b-4c39-9d0e-1c4a2b3c4d5e")))
    no_key = [c for c in COLS if c[1] != "created_at"]
    assert_same(_cache(no_key), _insert(b.domain_event_tuple(no_key)))
    wrong = [(f, n, 25 if n == "stream_version" else t, m) for f, n, t, m in COLS]
    assert_same(_cache(wrong), _insert(b.domain_event_tuple(wrong)))


def test_json_columns_take_the_careful_path() -> None:
    cols = [(f, n, 114 if t == 3802 else t, m) for f, n, t, m in COLS]
    data = '{"a": 1, "a": 2, "big": 123456789012345678901234567890}'
    assert_same(_cache(cols), _insert(b.domain_event_tuple(cols, event_data=data)))


def test_a_new_relation_message_replaces_the_plan() -> None:
    cache = _cache()
    encoder = ValueEncoder(cache)
    msg = _insert(b.domain_event_tuple())
    encoder.encode(RELID, msg.new)
    shifted = [(0, "extra", 25, -1), *COLS]
    new_rel = decode_pgoutput(b.relation(RELID, "public", "domain_events", shifted))
    assert isinstance(new_rel, Relation)
    cache.add(new_rel)
    _, value, _ = encoder.encode(RELID, _insert(b.domain_event_tuple(shifted)).new)
    assert orjson.loads(value)["stream_type"] == "organization"


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=40,
)
offsets = st.integers(min_value=-15 * 60, max_value=15 * 60).map(
    lambda m: timezone(timedelta(minutes=m))
)
# One generated domain_events row, column by column (also test_values_binary.py's).
row_columns: dict[str, st.SearchStrategy[object]] = {
    "event_id": st.uuids(),
    "stream_id": st.uuids(),
    "stream_type": st.text(),
    "version": st.integers(min_value=-(2**31), max_value=2**31 - 1),
    "event_type": st.text(),
    "data": json_values,
    "meta": st.dictionaries(st.text(), json_values, max_size=3),
    "key": st.none() | st.text(),
    "created": st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=offsets
    ),
}


def utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def text_tuple(row: Mapping[str, Any], created_at: str) -> bytes:
    """One row (row_columns' names) as pgoutput sends it in text mode."""
    key = row["key"]
    return b.domain_event_tuple(
        id=str(row["event_id"]),
        stream_id=str(row["stream_id"]),
        stream_type=utf8(row["stream_type"]),
        stream_version=str(row["version"]),
        event_type=utf8(row["event_type"]),
        event_data=utf8(pg_jsonb(row["data"])),
        event_metadata=utf8(pg_jsonb(row["meta"])),
        idempotency_key=None if key is None else utf8(key),
        created_at=created_at,
    )


@settings(max_examples=400, deadline=None)
@given(row=st.fixed_dictionaries(row_columns))
def test_generated_rows_match_the_row_path(row: dict[str, Any]) -> None:
    tup = text_tuple(row, pg_timestamptz(row["created"]))
    assert_same(_cache(), _insert(tup))


def test_big_jsonb_and_unicode() -> None:
    data = {"blob": "x" * 2_000_000, "name": "東京 🚀", "nested": [[[{"k": None}]]]}
    assert_same(_cache(), _insert(b.domain_event_tuple(event_data=pg_jsonb(data).encode())))


@pytest.mark.parametrize(
    "name",
    [
        "copy.bin",
        "large_jsonb.bin.gz",
        "multi_row_insert.bin",
        "null_idempotency_key.bin",
        "other_table_then_event.bin",
        "timezone_offset.bin",
        "unicode.bin",
    ],
)
def test_golden_captures_match(name: str) -> None:
    """Real PostgreSQL 15 output (jsonb text, offsets, unicode) through both paths."""
    cache = RelationCache()
    seen = 0
    for msg in domain_event_inserts(name, cache):
        assert_same(cache, msg)
        seen += 1
    assert seen > 0


def test_utc_instant_is_kept_with_its_offset() -> None:
    _, value, _ = ValueEncoder(_cache()).encode(
        RELID, _insert(b.domain_event_tuple(created_at="2026-11-26 08:30:32.25+05:30")).new
    )
    created = orjson.loads(value)["created_at"]
    assert created == "2026-11-26T08:30:32.250000+05:30"
    assert datetime.fromisoformat(created).astimezone(UTC) == datetime(
        2026, 11, 26, 3, 0, 32, 250000, tzinfo=UTC
    )
