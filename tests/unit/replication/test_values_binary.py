"""pgoutput's binary mode (``binary 'true'``): the same Kafka value as text mode.

For every generated row, the tuple PostgreSQL would send in text mode and the one it
would send in binary mode go through both the fast path (value_encoder.py) and the typed row
path (rows.py); all four values must be equal once parsed (``created_at`` as the same
instant: binary mode has no session time zone and prints UTC, so with a UTC session,
as the reader's is by default, even the strings are equal). Golden captures of both
modes from a real PostgreSQL 15 (scripts/capture_golden.py) are checked the same way.
"""

from __future__ import annotations

import json
import struct
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replication import rows, value_encoder
from replication.decoder import Insert, decode_pgoutput, parse_copy_data
from replication.errors import DecodeError
from replication.messages import PG_EPOCH, XLogData
from replication.rows import RelationCache, column_text, convert_binary_value
from replication.session import ReaderConfig, start_replication_command
from replication.value_encoder import ValueEncoder, binary_uuid_json
from tests.unit import pgoutput_builder as b
from tests.unit.pgoutput_fixtures import (
    RELID,
    domain_event_inserts,
    domain_events_cache,
    domain_events_insert,
)
from tests.unit.replication.test_values import (
    pg_jsonb,
    pg_timestamptz,
    row_columns,
    text_tuple,
    utf8,
)
from tests.unit.row_oracle import domain_event

COLS = b.DOMAIN_EVENTS_COLUMNS


def pg_text_timestamptz(moment: datetime) -> str:
    """As PostgreSQL prints it: the year has at least 4 digits (strftime drops the zeros)."""
    text = pg_timestamptz(moment)
    return f"{moment.year:04d}" + text[text.index("-") :]


def _us(moment: datetime) -> int:
    delta = moment - PG_EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def text_and_binary(*columns: Any) -> tuple[bytes, bytes]:
    """The tuple of one row (row_columns' order) as pgoutput sends it in text mode and in
    binary mode."""
    row = dict(zip(row_columns, columns, strict=True))
    text = text_tuple(row, pg_text_timestamptz(row["created"]))
    event_id, stream_id, stream_type, version, event_type, data, meta, key, created = columns
    binary = b.tuple_data(
        ("b", event_id.bytes),
        ("b", stream_id.bytes),
        ("b", utf8(stream_type)),
        ("b", struct.pack(">i", version)),
        ("b", utf8(event_type)),
        ("b", b"\x01" + utf8(pg_jsonb(data))),
        ("b", b"\x01" + utf8(pg_jsonb(meta))),
        None if key is None else ("b", utf8(key)),
        ("b", struct.pack(">q", _us(created))),
    )
    return text, binary


def outcomes(cache: RelationCache, tup: bytes) -> tuple[object, object]:
    """(fast path, row path): the parsed value with its key, or the DecodeError's column."""
    msg = domain_events_insert(tup)
    try:
        key, value, _ = ValueEncoder(cache).encode(RELID, msg.new)
        fast: object = (key, orjson.loads(value), list(orjson.loads(value)))
    except DecodeError as exc:
        fast = str(exc).split(":")[:2]
    try:
        slow_value = orjson.loads(domain_event(cache, msg).to_json_bytes())
        slow: object = (str(slow_value["stream_id"]).encode(), slow_value, list(slow_value))
    except DecodeError as exc:
        slow = str(exc).split(":")[:2]
    return fast, slow


def _instant(result: object) -> object:
    """The outcome with created_at as an instant (binary mode prints it in UTC)."""
    if isinstance(result, tuple):
        key, value, keys = result
        value = {**value, "created_at": datetime.fromisoformat(value["created_at"])}
        return key, value, keys
    return result


def assert_modes_agree(text: bytes, binary: bytes) -> None:
    cache = domain_events_cache()
    text_fast, text_slow = outcomes(cache, text)
    binary_fast, binary_slow = outcomes(cache, binary)
    assert text_fast == text_slow
    assert binary_fast == binary_slow
    assert _instant(binary_fast) == _instant(text_fast)


@settings(max_examples=400, deadline=None)
@given(row=st.fixed_dictionaries(row_columns))
def test_generated_rows_give_the_same_value_in_both_modes(row: dict[str, Any]) -> None:
    text, binary = text_and_binary(*(row[name] for name in row_columns))
    assert_modes_agree(text, binary)


SAMPLE = (
    UUID("0b9a0d8e-6f7b-4c39-9d0e-1c4a2b3c4d5e"),
    UUID("1c9a0d8e-6f7b-4c39-9d0e-1c4a2b3c4d5f"),
    "organization",
    3,
    "organization.bootstrap.initiated",
    {"name": "Acme", "admins": [{"role": "owner", "email": "a@b.c"}]},
    {"source": "api"},
    "key-1",
    datetime(2026, 11, 26, 3, 0, 32, 258123, tzinfo=UTC),
)


def test_sample_row_is_byte_identical_in_utc() -> None:
    text, binary = text_and_binary(*SAMPLE)
    cache = domain_events_cache()
    assert ValueEncoder(cache).encode(RELID, domain_events_insert(binary).new) == ValueEncoder(
        cache
    ).encode(RELID, domain_events_insert(text).new)


@pytest.mark.parametrize(
    "created",
    [
        datetime(2026, 11, 26, 3, 0, 32, tzinfo=UTC),  # no fraction
        datetime(2026, 11, 26, 3, 0, 32, 1, tzinfo=UTC),
        datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),  # before PostgreSQL's epoch
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ],
)
def test_timestamps_at_the_edges(created: datetime) -> None:
    text, binary = text_and_binary(*SAMPLE[:-1], created)
    assert_modes_agree(text, binary)


@pytest.mark.parametrize(
    ("us", "reason"),
    [
        ((1 << 63) - 1, "infinity cannot be represented"),
        (-(1 << 63), "-infinity cannot be represented"),
        (_us(datetime(1, 1, 1, tzinfo=UTC)) - 1, "cannot be represented"),  # 1 BC
        (_us(datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)) + 1, "cannot be represented"),
    ],
)
def test_unrepresentable_timestamps_are_refused_by_both_paths(us: int, reason: str) -> None:
    cols: list[object] = [("b", c.bytes) for c in SAMPLE[:2]]
    cols += [("b", b"organization"), ("b", struct.pack(">i", 3)), ("b", b"t")]
    cols += [("b", b"\x01{}"), ("b", b"\x01{}"), None, ("b", struct.pack(">q", us))]
    tup = b.tuple_data(*cols)
    fast, slow = outcomes(domain_events_cache(), tup)
    assert fast == slow == ["domain_events row", " column 'created_at'"]
    with pytest.raises(DecodeError, match=reason):
        ValueEncoder(domain_events_cache()).encode(RELID, domain_events_insert(tup).new)


@pytest.mark.parametrize(
    ("column", "raw"),
    [
        ("id", b"\x00" * 15),
        ("stream_version", b"\x00" * 8),
        ("event_data", b"\x02{}"),  # a jsonb version this reader does not know
        ("event_data", b""),  # no version byte
        ("event_type", b"\xff"),
        ("created_at", b"\x00" * 4),
    ],
)
def test_malformed_binary_columns_name_the_column_in_both_paths(column: str, raw: bytes) -> None:
    _, binary = text_and_binary(*SAMPLE)
    names = [name for _, name, _, _ in COLS]
    msg = domain_events_insert(binary)
    cols: list[object] = [
        ("b", raw) if name == column else (None if v is None else ("b", v))
        for name, v in zip(names, msg.new.values, strict=True)
    ]
    fast, slow = outcomes(domain_events_cache(), b.tuple_data(*cols))
    assert fast == slow == ["domain_events row", f" column {column!r}"]


def test_int8_and_varchar_and_json_columns() -> None:
    swap = {20: 23, 1043: 25, 114: 3802}
    for wide, narrow in swap.items():
        cols = [(f, n, wide if t == narrow else t, m) for f, n, t, m in COLS]
        text, binary = text_and_binary(*SAMPLE)
        msg = domain_events_insert(binary)
        parts: list[object] = [None if v is None else ("b", v) for v in msg.new.values]
        if wide == 20:
            parts[3] = ("b", struct.pack(">q", 3))
        if wide == 114:  # json_send: the text as stored, no version byte
            parts[5] = ("b", json.dumps(SAMPLE[5]).encode())
            parts[6] = ("b", json.dumps(SAMPLE[6]).encode())
        cache = domain_events_cache(cols)
        fast_b, slow_b = outcomes(cache, b.tuple_data(*parts))
        fast_t, slow_t = outcomes(cache, text)
        assert fast_b == slow_b == fast_t == slow_t


def test_every_accepted_type_has_a_binary_converter() -> None:
    """An OID the plan accepts without a binary converter would be a KeyError, not a
    clear refusal: both tables must cover every accepted type."""
    accepted = set().union(*(oids for _, oids, _ in rows._FIELDS))
    assert accepted <= set(rows._BINARY_CONVERTERS)
    assert set(value_encoder._BINARY_ENCODERS) == set(value_encoder._ENCODERS) == accepted


def test_unknown_binary_type_is_a_clear_error() -> None:
    with pytest.raises(DecodeError, match="unsupported column type OID 1700 in binary format"):
        convert_binary_value(1700, b"\x00\x01")


def test_uuid_formatting() -> None:
    for n in (0, 1, (1 << 128) - 1, 0x0123456789ABCDEF0123456789ABCDEF):
        value = UUID(int=n)
        assert binary_uuid_json(value.bytes) == str(value).encode()


def test_dead_letter_column_text() -> None:
    assert column_text(2950, "b", SAMPLE[0].bytes) == str(SAMPLE[0])
    assert column_text(23, "b", struct.pack(">i", -7)) == "-7"
    assert column_text(3802, "b", b'\x01{"a": 1}') == '{"a":1}'
    assert column_text(1184, "b", struct.pack(">q", 0)) == "2000-01-01T00:00:00+00:00"
    assert column_text(1700, "b", b"\x00\x01") == "\\x0001"  # unknown type: its bytes
    assert column_text(25, "t", b"caf\xc3\xa9") == "café"
    assert column_text(25, "n", None) is None


def test_start_replication_asks_for_binary_only_where_supported() -> None:
    cfg = ReaderConfig(dsn="postgresql://x/y", kafka_bootstrap="k:9092", slot="s", publication="p")
    command, binary = start_replication_command(cfg, 150004)
    assert binary
    assert command == (
        "START_REPLICATION SLOT s LOGICAL 0/0 "
        "(proto_version '1', publication_names 'p', binary 'true')"
    )
    command, binary = start_replication_command(cfg, 130011)
    assert not binary
    assert "binary" not in command
    off = ReaderConfig(
        dsn="postgresql://x/y", kafka_bootstrap="k:9092", slot="s", publication="p", binary=False
    )
    assert start_replication_command(off, 150004)[1] is False


# --- golden captures of both modes from the same scenarios ------------------------------------

GOLDEN_PAIRS = [
    "copy",
    "large_jsonb",
    "multi_row_insert",
    "null_idempotency_key",
    "timezone_offset",
    "unicode",
]


def _golden_values(name: str) -> list[tuple[bytes, dict[str, object]]]:
    cache = RelationCache()
    encoder = ValueEncoder(cache)
    out = []
    for msg in domain_event_inserts(name, cache):
        key, value, _ = encoder.encode(msg.relation_id, msg.new)
        slow = orjson.loads(domain_event(cache, msg).to_json_bytes())
        assert orjson.loads(value) == slow
        out.append((key, orjson.loads(value)))
    return out


def _golden_file(name: str, binary: bool) -> str:
    suffix = ".binary" if binary else ""
    for ext in (".bin", ".bin.gz"):
        if (b.GOLDEN / f"{name}{suffix}{ext}").exists():
            return f"{name}{suffix}{ext}"
    raise FileNotFoundError(name)


@pytest.mark.parametrize("name", GOLDEN_PAIRS)
def test_golden_binary_captures_match_text_mode(name: str) -> None:
    binary_file = _golden_file(name, binary=True)
    kinds = set()
    for raw in b.read_frames(binary_file):
        frame = parse_copy_data(raw)
        if isinstance(frame, XLogData) and frame.payload[:1] == b"I":
            msg = decode_pgoutput(frame.payload)
            assert isinstance(msg, Insert)
            kinds |= set(msg.new.kinds)
    assert "b" in kinds and "t" not in kinds  # really binary columns
    text_rows = _golden_values(_golden_file(name, binary=False))
    binary_rows = _golden_values(binary_file)
    assert len(binary_rows) == len(text_rows) > 0
    for (bkey, bvalue), (tkey, tvalue) in zip(binary_rows, text_rows, strict=True):
        assert bkey == tkey
        assert list(bvalue) == list(tvalue)
        created_b = datetime.fromisoformat(str(bvalue.pop("created_at")))
        created_t = datetime.fromisoformat(str(tvalue.pop("created_at")))
        assert created_b == created_t
        assert created_b.utcoffset() == timedelta(0)
        if created_t.utcoffset() == timedelta(0):
            assert created_b.isoformat() == created_t.isoformat()
        assert bvalue == tvalue
