"""Issue 13's reader side: faithful jsonb, the claim-check decision, large frames.

The reader embeds jsonb as PostgreSQL printed it, so the value, parsed with
arbitrary-precision numbers and no depth limit, is the row; an event too large for a
record becomes a claim check. The consumer side is in tests/unit/pipeline/agents/
test_records.py, a dead letter's identity in test_deadletter_store.py.
"""

from __future__ import annotations

import json
from decimal import Decimal

import orjson
import pytest

from replication.frame_loop import CAREFUL_FRAME_BYTES, FrameLoop
from replication.lsn import LSN, Position
from replication.record_value import CLAIM_CHECK_BYTES, needs_claim_check
from replication.tracker import FlushTracker
from replication.value_encoder import ValueEncoder
from tests.exact_json import DEEP, exact, same
from tests.unit import pgoutput_builder as b
from tests.unit.pgoutput_fixtures import RELID, domain_events_cache, domain_events_insert

FIFTY_DIGITS = "12345678901234567890123456789012345678901234567890.123456789"
UNICODE = {"rtl": "مرحبا بالعالم שלום", "emoji": "👩‍👩‍👧‍👦 🚀", "astral": "𝕏𐍈𠜎"}


def encode_typed(
    event_data: object, binary: bool = False, event_type: str = "t.happened"
) -> tuple[bytes, bytes, bytes, bool]:
    """``encode_sized`` of a row: (key, value, event type, claim check)."""
    text = event_data if isinstance(event_data, str) else json.dumps(event_data, ensure_ascii=False)
    raw: object = ("b", b"\x01" + text.encode()) if binary else text
    msg = domain_events_insert(b.domain_event_tuple(event_data=raw, event_type=event_type))
    return ValueEncoder(domain_events_cache()).encode_sized(RELID, msg.new)


def encode(event_data: object, binary: bool = False) -> tuple[bytes, bytes, bool]:
    key, value, _, claim = encode_typed(event_data, binary)
    return key, value, claim


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (DEEP, None),
        ('{"n": 1e309}', {"n": Decimal("1e309")}),
        (f'{{"n": {FIFTY_DIGITS}}}', {"n": Decimal(FIFTY_DIGITS)}),
        (json.dumps(UNICODE, ensure_ascii=False), UNICODE),
    ],
)
def test_jsonb_orjson_cannot_read_is_carried_faithfully(
    text: str, expected: object, binary: bool
) -> None:
    key, value, claim = encode(text, binary)
    assert not claim
    row = exact(value)
    assert isinstance(row, dict)
    assert same(row["event_data"], exact(text.encode()) if expected is None else expected)
    assert key == row["stream_id"].encode()


def test_claim_check_decision_at_the_threshold() -> None:
    assert CLAIM_CHECK_BYTES < 16 * 1024 * 1024  # headroom for headers and batch framing
    assert not needs_claim_check(36, CLAIM_CHECK_BYTES - 36)
    assert needs_claim_check(36, CLAIM_CHECK_BYTES - 35)


@pytest.mark.parametrize("binary", [False, True])
def test_an_oversized_event_becomes_a_reference_without_its_payload(binary: bool) -> None:
    big = '{"blob": "' + "x" * (CLAIM_CHECK_BYTES + 1) + '"}'
    key, value, claim = encode(big, binary)
    assert claim
    row = orjson.loads(value)
    assert "event_data" not in row and "event_metadata" not in row
    assert row["id"] == "0b9a0d8e-6f7b-4c39-9d0e-1c4a2b3c4d5e"
    assert row["stream_id"] == key.decode()
    assert {"stream_type", "stream_version", "event_type", "created_at"} <= set(row)
    # A payload under the limit whose row is over it: decided on the encoded size.
    _, value, claim = encode('{"blob": "' + "x" * (CLAIM_CHECK_BYTES - 100) + '"}', binary)
    assert claim and "event_data" not in orjson.loads(value)
    # Just below the limit: the full value.
    _, value, claim = encode('{"blob": "' + "x" * (CLAIM_CHECK_BYTES - 2000) + '"}', binary)
    assert not claim and len(orjson.loads(value)["event_data"]["blob"]) > 16_000_000


def test_frame_loop_leaves_large_frames_to_the_session() -> None:
    added: list[Position] = []
    loop = FrameLoop(
        ValueEncoder(domain_events_cache()).encode,
        lambda pos, key, value, headers: added.append(pos),
        FlushTracker(LSN.ZERO),
        100,
    )
    begin = b.xlogdata(0, 0, 0, b"B" + (16).to_bytes(8, "big") + bytes(8) + (7).to_bytes(4, "big"))
    small = b.xlogdata(0, 0, 0, b.insert(RELID, b.domain_event_tuple()))
    large = b.xlogdata(
        0,
        0,
        0,
        b.insert(RELID, b.domain_event_tuple(event_data='"' + "x" * CAREFUL_FRAME_BYTES + '"')),
    )
    assert loop.run([begin, small, large, small], 0) == 2
    assert added == [Position(LSN(16), 0)]
    assert loop.headers(1, b"t.happened") == [
        ("commit_lsn", b"0/10"),
        ("idx", b"1"),
        ("xid", b"7"),
        ("commit_ts", b"2000-01-01T00:00:00+00:00"),
        ("event_type", b"t.happened"),
    ]


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("event_type", ["order.placed", 'a "quoted" \\ type ü 🚀'])
def test_a_claim_checked_event_carries_its_event_type(binary: bool, event_type: str) -> None:
    # Over the limit by the payload's raw size (never encoded), and by its encoded size.
    for size in (CLAIM_CHECK_BYTES + 1, CLAIM_CHECK_BYTES - 100):
        big = '{"event_type": "decoy", "blob": "' + "x" * size + '"}'
        _, value, kind, claim = encode_typed(big, binary, event_type)
        assert claim
        assert kind == event_type.encode()
        assert orjson.loads(value)["event_type"] == event_type
