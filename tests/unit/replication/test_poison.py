"""Issue 13's pure parts: faithful jsonb, the claim-check decision, dead letters once.

The reader embeds jsonb as PostgreSQL printed it, so the value, parsed with
arbitrary-precision numbers and no depth limit, is the row; an event too large for a
record becomes a claim check; a dead letter's identity is (position, reason kind).
"""

from __future__ import annotations

import json
import sys
from decimal import Decimal

import orjson
import pytest

from pipeline.agents.errors import RecordRejected
from pipeline.agents.records import (
    decode_record,
    decode_row,
    is_claim_check,
    loads,
    parse_value,
)
from replication.deadletter_store import (
    DeadLetter,
    dead_letter_key,
    decode_headers,
    encode_headers,
)
from replication.frame_loop import CAREFUL_FRAME_BYTES, FrameLoop
from replication.lsn import LSN, Position
from replication.record_value import CLAIM_CHECK_BYTES, needs_claim_check
from replication.tracker import FlushTracker
from replication.value_encoder import ValueEncoder
from tests.unit import pgoutput_builder as b
from tests.unit.pgoutput_fixtures import RELID, domain_events_cache, domain_events_insert

DEEP = "[" * 1100 + '"bottom"' + "]" * 1100
FIFTY_DIGITS = "12345678901234567890123456789012345678901234567890.123456789"
UNICODE = {"rtl": "مرحبا بالعالم שלום", "emoji": "👩‍👩‍👧‍👦 🚀", "astral": "𝕏𐍈𠜎"}


def exact(value: bytes) -> object:
    """The value parsed with arbitrary-precision numbers and no depth limit."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)
    try:
        return json.loads(value, parse_float=Decimal, parse_int=int)
    finally:
        sys.setrecursionlimit(limit)


def same(a: object, b: object) -> bool:
    """a == b, with room for comparing 1,100 levels."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)
    try:
        return a == b
    finally:
        sys.setrecursionlimit(limit)


def encode(event_data: object, binary: bool = False) -> tuple[bytes, bytes, bool]:
    text = event_data if isinstance(event_data, str) else json.dumps(event_data, ensure_ascii=False)
    raw: object = ("b", b"\x01" + text.encode()) if binary else text
    msg = domain_events_insert(b.domain_event_tuple(event_data=raw))
    return ValueEncoder(domain_events_cache()).encode_sized(RELID, msg.new)


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
    assert [name for name, _ in loop.headers(1)] == ["commit_lsn", "idx", "xid", "commit_ts"]


def test_consumers_read_what_orjson_cannot() -> None:
    assert loads(b'{"n": 1e309}') == {"n": Decimal("1e309")}
    assert loads(b'{"n": 1.5}') == {"n": 1.5}
    assert same(loads(DEEP.encode()), exact(DEEP.encode()))
    with pytest.raises(RecordRejected, match="bad_value"):
        parse_value(b"[" * 20_000 + b"]" * 20_000)
    with pytest.raises(RecordRejected, match="bad_value"):
        parse_value(b"{nope")
    with pytest.raises(RecordRejected, match="bad_value"):
        parse_value(b'{"n": NaN, "deep": ' + DEEP.encode() + b"}")


HEADERS = [
    ("commit_lsn", b"0/16B3748"),
    ("idx", b"0"),
    ("xid", b"750"),
    ("commit_ts", b"2026-11-26T03:00:32.123456+00:00"),
]
ROW = {
    "id": "0b9a0d8e-6f7b-4c39-9d0e-1c4a2b3c4d5e",
    "stream_id": "1c9a0d8e-6f7b-4c39-9d0e-1c4a2b3c4d5f",
    "stream_type": "organization",
    "stream_version": 1,
    "event_type": "anything",
    "idempotency_key": None,
    "created_at": "2026-11-26T03:00:32.123456+00:00",
}


def test_a_deep_payload_decodes_and_a_claim_check_is_recognised() -> None:
    value = orjson.dumps({**ROW, "event_data": {}, "event_metadata": {}})[:-1]
    value += b', "deep": ' + DEEP.encode() + b"}"
    event = decode_record(ROW["stream_id"].encode(), value, HEADERS, validate=None)
    assert event.position == Position(LSN.parse("0/16B3748"), 0)
    assert not is_claim_check(HEADERS)
    assert is_claim_check([*HEADERS, ("claim_check", b"1")])
    resolved = decode_row(
        ROW["stream_id"].encode(),
        {**ROW, "event_data": {"n": Decimal("1e309")}, "event_metadata": {}},
        HEADERS,
        validate=None,
    )
    assert resolved.event_data == {"n": Decimal("1e309")}


def test_dead_letter_key_is_position_and_reason_kind() -> None:
    pos = Position(LSN.parse("0/16B3748"), 3)
    assert dead_letter_key(pos, "contract") == "0/16B3748/3/contract"
    assert dead_letter_key(pos, "contract", "domain-events[1]@9") == "0/16B3748/3/contract"
    # The same record redelivered at another offset (a replay) has the same identity.
    first = DeadLetter(pos, "contract", "a", "projection", where="domain-events[1]@9")
    again = DeadLetter(pos, "contract", "b", "projection", where="domain-events[1]@90")
    assert first.dead_letter_key == again.dead_letter_key
    assert DeadLetter(pos, "projection", "a", "projection").dead_letter_key != first.dead_letter_key
    assert dead_letter_key(None, "bad_headers", "domain-events[1]@9") == (
        "domain-events[1]@9/bad_headers"
    )


def test_headers_survive_the_table() -> None:
    headers = [("reason", b"x\xff"), ("idx", b"1")]
    assert decode_headers(orjson.loads(encode_headers(headers))) == headers


def test_dead_letters_cli_usage_and_configuration_errors_exit_2() -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app

    runner = CliRunner()
    assert runner.invoke(app, ["dead-letters", "--help"]).exit_code == 0
    both = runner.invoke(app, ["dead-letters", "redrive", "0/1/0/contract", "--all"])
    assert both.exit_code == 2 and "one KEY or --all" in both.output
    assert runner.invoke(app, ["dead-letters", "redrive"]).exit_code == 2
    unset = runner.invoke(app, ["dead-letters", "list"], env={"PIPELINE_DATABASE_URL": ""})
    assert unset.exit_code == 2 and "PIPELINE_DATABASE_URL" in unset.output
