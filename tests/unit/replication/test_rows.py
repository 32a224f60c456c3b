"""The relation cache, the column parsers of rows.py, and the reader's Kafka value of a
text-format ``domain_events`` tuple (replication.value_encoder) against the typed reading of
tests/unit/row_oracle.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID

import orjson
import pytest

from replication.decoder import Insert, Relation, TupleData, decode_pgoutput
from replication.errors import DecodeError, UnknownRelationError
from replication.rows import RelationCache, parse_timestamptz
from replication.value_encoder import ValueEncoder
from tests.unit import pgoutput_builder as b
from tests.unit.row_oracle import DomainEventRow, convert_text_value, domain_event

COLS = b.DOMAIN_EVENTS_COLUMNS


def rel(columns: list[tuple[int, str, int, int]] = COLS, relid: int = 16384) -> Relation:
    msg = decode_pgoutput(b.relation(relid, "public", "domain_events", columns))
    assert isinstance(msg, Relation)
    return msg


def ins(tup: bytes, relid: int = 16384) -> Insert:
    msg = decode_pgoutput(b.insert(relid, tup))
    assert isinstance(msg, Insert)
    return msg


EXPECTED = DomainEventRow(
    id=UUID("0b9a0d8e-6f7b-4c39-9d0e-1c4a2b3c4d5e"),
    stream_id=UUID("1c9a0d8e-6f7b-4c39-9d0e-1c4a2b3c4d5f"),
    stream_type="organization",
    stream_version=3,
    event_type="organization.bootstrap.initiated",
    event_data={"name": "Acme", "admins": [{"role": "owner", "email": "a@b.c"}]},
    event_metadata={"source": "api"},
    idempotency_key="key-1",
    created_at=datetime(2026, 11, 26, 3, 0, 32, 258123, tzinfo=UTC),
)


# --- timestamptz ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-26 03:00:32.258123+00", datetime(2026, 11, 26, 3, 0, 32, 258123, tzinfo=UTC)),
        ("2026-11-26 03:00:32+00", datetime(2026, 11, 26, 3, 0, 32, tzinfo=UTC)),
        (
            "2026-11-26 08:30:32.5+05:30",
            datetime(2026, 11, 26, 8, 30, 32, 500000, tzinfo=timezone(timedelta(hours=5.5))),
        ),
        ("2026-11-25 19:00:32-08", datetime(2026, 11, 25, 19, 0, 32, tzinfo=timezone(-timedelta(hours=8)))),
        ("0099-01-01 00:00:00+00", datetime(99, 1, 1, tzinfo=UTC)),
    ],
)  # fmt: skip
def test_parse_timestamptz(text: str, expected: datetime) -> None:
    value = parse_timestamptz(text)
    assert value == expected
    assert value.utcoffset() == expected.utcoffset()  # the offset is kept, not just the instant


def test_timestamptz_with_second_offsets_becomes_utc() -> None:
    # Historical LMT offsets carry seconds, which RFC 3339 cannot express.
    value = parse_timestamptz("1850-01-01 00:00:00+00:53:28")
    assert value.utcoffset() == timedelta(0)
    assert value == datetime(1849, 12, 31, 23, 6, 32, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    ["infinity", "-infinity", "0044-03-15 00:00:00+00 BC", "2026-11-26 03:00:32", "nonsense",
     "10000-01-01 00:00:00+00"],
)  # fmt: skip
def test_unrepresentable_timestamptz(text: str) -> None:
    with pytest.raises(DecodeError, match="timestamptz"):
        parse_timestamptz(text)


# --- per-type conversion ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("oid", "raw", "expected"),
    [
        (16, b"t", True),
        (16, b"f", False),
        (23, b"-42", -42),
        (20, b"9223372036854775807", 2**63 - 1),
        (25, "héllo".encode(), "héllo"),
        (1043, b"v", "v"),
        (2950, b"0b9a0d8e-6f7b-4c39-9d0e-1c4a2b3c4d5e", UUID("0b9a0d8e-6f7b-4c39-9d0e-1c4a2b3c4d5e")),
        (3802, b'{"a": [1, 2.5, null, true]}', {"a": [1, 2.5, None, True]}),
        (114, b'[1,  "x"]', [1, "x"]),
        (1184, b"2026-11-26 03:00:32+00", datetime(2026, 11, 26, 3, 0, 32, tzinfo=UTC)),
    ],
)  # fmt: skip
def test_convert_text_value(oid: int, raw: bytes, expected: object) -> None:
    assert convert_text_value(oid, raw) == expected


@pytest.mark.parametrize(
    ("oid", "raw"),
    [(16, b"yes"), (23, b"1.5"), (2950, b"not-a-uuid"), (3802, b"{bad"), (25, b"\xff"),
     (1184, b"garbage")],
)  # fmt: skip
def test_convert_invalid_values(oid: int, raw: bytes) -> None:
    with pytest.raises(DecodeError, match="domain_events row"):
        convert_text_value(oid, raw)


def test_convert_unsupported_oid() -> None:
    with pytest.raises(DecodeError, match="unsupported column type OID 700"):
        convert_text_value(700, b"1.5")


# --- relation cache and rows -----------------------------------------------------------


def value_of(relation: Relation, tup: TupleData) -> dict[str, object]:
    """The reader's Kafka value of ``tup`` (parsed), its key checked against stream_id."""
    cache = RelationCache()
    cache.add(relation)
    key, value, _ = ValueEncoder(cache).encode(relation.relation_id, tup)
    parsed: dict[str, object] = orjson.loads(value)
    assert key == str(parsed["stream_id"]).encode()
    return parsed


EXPECTED_VALUE = orjson.loads(EXPECTED.to_json_bytes())


def test_relation_cache() -> None:
    cache = RelationCache()
    assert 16384 not in cache
    with pytest.raises(UnknownRelationError, match="relation id 16384"):
        cache.get(16384)
    with pytest.raises(UnknownRelationError):
        ValueEncoder(cache).encode(16384, ins(b.domain_event_tuple()).new)
    cache.add(rel())
    assert 16384 in cache
    assert len(cache) == 1
    assert cache.get(16384).name == "domain_events"
    assert domain_event(cache, ins(b.domain_event_tuple())) == EXPECTED


def test_relation_replaced_rebuilds_plan() -> None:
    cache = RelationCache()
    encoder = ValueEncoder(cache)
    cache.add(rel())
    _, value, _ = encoder.encode(16384, ins(b.domain_event_tuple()).new)
    assert orjson.loads(value) == EXPECTED_VALUE
    # ALTER TABLE: a new column in front shifts every index; a new Relation follows.
    shifted = [(0, "tenant", 25, -1), *COLS]
    cache.add(rel(shifted))
    _, value, _ = encoder.encode(16384, ins(b.domain_event_tuple(shifted)).new)
    assert orjson.loads(value) == EXPECTED_VALUE


def test_null_idempotency_key() -> None:
    assert value_of(rel(), b_tuple(idempotency_key=None))["idempotency_key"] is None


def b_tuple(columns: list[tuple[int, str, int, int]] = COLS, **overrides: object) -> TupleData:
    return ins(b.domain_event_tuple(columns, **overrides)).new


def test_unknown_columns_are_ignored() -> None:
    cols = [COLS[0], (0, "shard", 23, -1), *COLS[1:], (0, "trace", 3802, -1)]
    assert value_of(rel(cols), b_tuple(cols, shard="7", trace='{"x": 1}')) == EXPECTED_VALUE


def test_alternative_types_accepted() -> None:
    cols = [
        (name_flags, name, {25: 1043, 23: 20, 3802: 114}.get(oid, oid), mod)
        for name_flags, name, oid, mod in COLS
    ]
    assert value_of(rel(cols), b_tuple(cols)) == EXPECTED_VALUE


def test_missing_required_column_is_named() -> None:
    cols = [c for c in COLS if c[1] != "stream_id"]
    with pytest.raises(DecodeError, match="has no column 'stream_id'"):
        value_of(rel(cols), b_tuple(cols))


def test_short_tuple_names_missing_column() -> None:
    tup = ins(b.tuple_data(*[b.SAMPLE_ROW[c[1]] for c in COLS[:-1]])).new
    with pytest.raises(DecodeError, match="missing required column 'created_at'"):
        value_of(rel(), tup)


def test_null_in_required_column_is_named() -> None:
    with pytest.raises(DecodeError, match="required column 'event_type' is NULL"):
        value_of(rel(), b_tuple(event_type=None))


def test_wrong_column_type_is_named() -> None:
    cols = [(f, n, 25 if n == "stream_version" else o, m) for f, n, o, m in COLS]
    with pytest.raises(DecodeError, match=r"column 'stream_version' has type OID 25"):
        value_of(rel(cols), b_tuple(cols))


# jsonb is embedded as PostgreSQL printed it, never parsed (replication.value_encoder): a
# malformed one cannot come from the server and is not looked for.
@pytest.mark.parametrize(
    ("column", "value"),
    [("id", "zzz"), ("stream_version", "three"), ("created_at", "yesterday"),
     ("stream_type", b"\xff\xfe")],
)  # fmt: skip
def test_invalid_value_names_column(column: str, value: object) -> None:
    with pytest.raises(DecodeError, match=f"column '{column}'"):
        value_of(rel(), b_tuple(COLS, **{column: value}))


@pytest.mark.parametrize("value", [b.UNCHANGED])
def test_unchanged_column_rejected(value: object) -> None:
    with pytest.raises(DecodeError, match="column 'event_data' has kind"):
        value_of(rel(), b_tuple(event_data=value))


def test_kafka_value() -> None:
    value = value_of(
        rel(), b_tuple(created_at="2026-11-26 08:30:32+05:30", event_data='{"k": "ü 🚀"}')
    )
    assert value == {
        "id": "0b9a0d8e-6f7b-4c39-9d0e-1c4a2b3c4d5e",
        "stream_id": "1c9a0d8e-6f7b-4c39-9d0e-1c4a2b3c4d5f",
        "stream_type": "organization",
        "stream_version": 3,
        "event_type": "organization.bootstrap.initiated",
        "event_data": {"k": "ü 🚀"},  # embedded object, not a string of JSON
        "event_metadata": {"source": "api"},
        "idempotency_key": "key-1",
        "created_at": "2026-11-26T08:30:32+05:30",  # RFC 3339, offset kept
    }
    assert list(value) == [
        "id", "stream_id", "stream_type", "stream_version", "event_type", "event_data",
        "event_metadata", "idempotency_key", "created_at",
    ]  # fmt: skip
    fractional = value_of(rel(), b_tuple())["created_at"]
    assert fractional == "2026-11-26T03:00:32.258123+00:00"
    assert fractional == orjson.loads(EXPECTED.to_json_bytes())["created_at"]
    assert isinstance(fractional, str)
    assert datetime.fromisoformat(fractional) == EXPECTED.created_at
