"""A dead letter's identity (position, reason kind) and its headers in the table (pure)."""

from __future__ import annotations

import orjson

from replication.deadletter_store import (
    DeadLetter,
    dead_letter_key,
    decode_headers,
    encode_headers,
)
from replication.lsn import LSN, Position


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
