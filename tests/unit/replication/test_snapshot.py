"""The initial snapshot's record of a row against the stream's record of the same row.

The snapshot reads ``domain_events`` with a SELECT (jsonb as text, created_at as
psycopg's datetime in the session time zone); the stream reads pgoutput's columns. Both
build the value with :func:`replication.record_value.assemble`: for the same row the
bytes must be equal, so a consumer cannot tell which of the two sent an event.
"""

from __future__ import annotations

import orjson
import pytest

from replication.lsn import LSN, Position
from replication.messages import TupleData
from replication.record_value import CLAIM_CHECK_BYTES, CLAIM_CHECK_HEADER
from replication.rows import RelationCache
from replication.snapshot import snapshot_record
from replication.value_encoder import ValueEncoder
from tests.unit import pgoutput_builder as b
from tests.unit.pgoutput_fixtures import (
    RELID,
    as_selected,
    domain_event_inserts,
    domain_events_cache,
    domain_events_insert,
)


def stream_and_snapshot(
    cache: RelationCache, tup: TupleData
) -> tuple[tuple[bytes, bytes, bytes, bool], tuple[bytes, bytes, bytes, bool]]:
    """(key, value, event_type header, claim check) of the stream's and the snapshot's
    record of the same row."""
    key, value, event_type, claim_checked = ValueEncoder(cache).encode_sized(RELID, tup)
    _, s_key, s_value, headers = snapshot_record(as_selected(tup), 0)
    snapshot = (s_key, s_value, dict(headers)["event_type"], CLAIM_CHECK_HEADER in headers)
    return (key, value, event_type, claim_checked), snapshot


@pytest.mark.parametrize(
    "name",
    ["multi_row_insert.bin", "copy.bin", "unicode.bin", "large_jsonb.bin.gz",
     "null_idempotency_key.bin", "timezone_offset.bin"],
)  # fmt: skip
def test_a_captured_row_gives_the_same_record_both_ways(name: str) -> None:
    cache = RelationCache()
    inserts = list(domain_event_inserts(name, cache))
    assert inserts
    for msg in inserts:
        stream, snapshot = stream_and_snapshot(cache, msg.new)
        assert snapshot == stream


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"idempotency_key": None},
        {"created_at": "2026-11-26 03:00:32+00"},
        {"created_at": "2026-11-26 08:30:32.25-03:30"},
        {"event_data": '{"s": "quote \\" backslash \\\\ tab \\t ü 🚀", "n": 1e400}'},
        {"event_type": 'quote " backslash \\ tab \t ü 🚀'},
        {"event_data": '{"event_type": "decoy"}', "stream_type": ',"event_type":"decoy"'},
    ],
)
def test_a_built_row_gives_the_same_record_both_ways(overrides: dict[str, object]) -> None:
    stream, snapshot = stream_and_snapshot(
        domain_events_cache(), domain_events_insert(b.domain_event_tuple(None, **overrides)).new
    )
    assert snapshot == stream
    row_type = overrides.get("event_type", b.SAMPLE_ROW["event_type"])
    assert isinstance(row_type, str) and snapshot[2] == row_type.encode()


def test_a_row_too_large_for_a_record_is_the_same_claim_check_both_ways() -> None:
    big = '{"pad": "' + "x" * CLAIM_CHECK_BYTES + '"}'
    stream, snapshot = stream_and_snapshot(
        domain_events_cache(), domain_events_insert(b.domain_event_tuple(event_data=big)).new
    )
    assert stream[3] and snapshot[3]  # both claim checks
    assert snapshot[2] == b.SAMPLE_ROW["event_type"].encode()  # type: ignore[union-attr]
    assert snapshot == stream
    assert "event_data" not in orjson.loads(stream[1])


def test_snapshot_positions_and_headers() -> None:
    tup = domain_events_insert(b.domain_event_tuple()).new
    pos, key, _, headers = snapshot_record(as_selected(tup), 7)
    assert pos == Position(LSN.ZERO, 7)  # before every streamed event
    assert key == b.SAMPLE_ROW["stream_id"].encode()  # type: ignore[union-attr]
    assert dict(headers) == {
        "commit_lsn": b"0/0",
        "idx": b"7",
        "xid": b"0",
        "commit_ts": b"2026-11-26T03:00:32.258123+00:00",
        "event_type": b"organization.bootstrap.initiated",
    }
