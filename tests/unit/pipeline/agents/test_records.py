"""Decoding a Kafka record into a DomainEvent (pure)."""

from __future__ import annotations

import uuid
from decimal import Decimal

import orjson
import pytest

from pipeline import events as ev
from pipeline.agents.errors import RecordRejected
from pipeline.agents.headers import header_event_type, is_claim_check
from pipeline.agents.records import decode_record, decode_row, loads, parse_value
from replication.lsn import LSN, Position
from tests.exact_json import DEEP, exact, same
from tests.unit.pipeline.agents.samples import HEADERS, ORG, row


def test_decode_reads_the_row_and_its_position() -> None:
    value = row()
    got = decode_record(str(ORG).encode(), orjson.dumps(value), HEADERS)
    assert got.position == Position(LSN.parse("16/B374D848"), 2)
    assert (got.stream_id, got.event_type, got.xid) == (ORG, ev.BOOTSTRAP_INITIATED, 747)
    as_row = got.as_row()
    assert as_row["position"] == got.position
    assert (as_row["commit_lsn"], as_row["idx"]) == (got.position.commit_lsn, 2)


@pytest.mark.parametrize(
    ("key", "value", "headers", "kind"),
    [
        (str(ORG).encode(), b"{not json", HEADERS, "bad_value"),
        (str(ORG).encode(), None, HEADERS, "bad_value"),
        (str(ORG).encode(), b"[1]", HEADERS, "bad_value"),
        (str(ORG).encode(), orjson.dumps(row()), HEADERS[1:], "bad_headers"),
        (
            str(ORG).encode(),
            orjson.dumps(row()),
            [("commit_lsn", b"nope"), *HEADERS[1:]],
            "bad_headers",
        ),
        (str(ORG).encode(), orjson.dumps(row(stream_version=0)), HEADERS, "bad_envelope"),
        (str(ORG).encode(), orjson.dumps({"id": "x"}), HEADERS, "bad_envelope"),
        (b"someone-else", orjson.dumps(row()), HEADERS, "bad_key"),
        (
            str(ORG).encode(),
            orjson.dumps(row(event_data={"name": "Acme", "subdomain": "acme", "admins": []})),
            HEADERS,
            "contract",
        ),
    ],
)
def test_bad_records_are_rejected_with_a_kind(
    key: bytes, value: bytes | None, headers: list[tuple[str, bytes]], kind: str
) -> None:
    with pytest.raises(RecordRejected) as info:
        decode_record(key, value, headers)
    assert info.value.kind == kind


def test_a_workflow_id_other_than_the_streams_is_rejected() -> None:
    data = {
        "job_id": str(uuid.uuid4()),
        "workflow_id": f"org-bootstrap-{uuid.uuid4()}",
        "worker_id": "w",
    }
    value = orjson.dumps(row(event_type=ev.QUEUE_CLAIMED, event_data=data))
    with pytest.raises(RecordRejected) as info:
        decode_record(str(ORG).encode(), value, HEADERS, validate=None)
    assert info.value.kind == "bad_workflow_id"


def test_an_event_type_header_that_disagrees_with_the_value_is_rejected() -> None:
    key, value = str(ORG).encode(), orjson.dumps(row())  # an initiated event
    agreeing = [*HEADERS, ("event_type", ev.BOOTSTRAP_INITIATED.encode())]
    assert decode_record(key, value, agreeing).event_type == ev.BOOTSTRAP_INITIATED
    for says in (ev.QUEUE_PENDING.encode(), b"", ev.BOOTSTRAP_INITIATED.upper().encode()):
        with pytest.raises(RecordRejected) as info:
            decode_record(key, value, [*HEADERS, ("event_type", says)])
        assert info.value.kind == "bad_headers"
        assert "event_type header" in info.value.detail
    # A repeated header: the last one is the one routing read, and the one checked.
    repeated = [("event_type", ev.QUEUE_PENDING.encode()), *agreeing]
    assert decode_record(key, value, repeated).event_type == ev.BOOTSTRAP_INITIATED
    with pytest.raises(RecordRejected, match="bad_headers"):
        decode_record(key, value, [*agreeing, ("event_type", ev.QUEUE_PENDING.encode())])
    # A header that is not UTF-8 is ignored (routing ignores it too: the value routes).
    not_utf8 = [*HEADERS, ("event_type", b"\xff\xfe")]
    assert header_event_type(not_utf8) is None
    assert decode_record(key, value, not_utf8).event_type == ev.BOOTSTRAP_INITIATED


# ---- values orjson cannot read, claim checks (issue 13) ----

DEEP_HEADERS = [
    ("commit_lsn", b"0/16B3748"),
    ("idx", b"0"),
    ("xid", b"750"),
    ("commit_ts", b"2026-11-26T03:00:32.123456+00:00"),
]
DEEP_ROW = {
    "id": "0b9a0d8e-6f7b-4c39-9d0e-1c4a2b3c4d5e",
    "stream_id": "1c9a0d8e-6f7b-4c39-9d0e-1c4a2b3c4d5f",
    "stream_type": "organization",
    "stream_version": 1,
    "event_type": "anything",
    "idempotency_key": None,
    "created_at": "2026-11-26T03:00:32.123456+00:00",
}


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


def test_a_deep_payload_decodes_and_a_claim_check_is_recognised() -> None:
    value = orjson.dumps({**DEEP_ROW, "event_data": {}, "event_metadata": {}})[:-1]
    value += b', "deep": ' + DEEP.encode() + b"}"
    event = decode_record(DEEP_ROW["stream_id"].encode(), value, DEEP_HEADERS, validate=None)
    assert event.position == Position(LSN.parse("0/16B3748"), 0)
    assert not is_claim_check(DEEP_HEADERS)
    assert is_claim_check([*DEEP_HEADERS, ("claim_check", b"1")])
    resolved = decode_row(
        DEEP_ROW["stream_id"].encode(),
        {**DEEP_ROW, "event_data": {"n": Decimal("1e309")}, "event_metadata": {}},
        DEEP_HEADERS,
        validate=None,
    )
    assert resolved.event_data == {"n": Decimal("1e309")}
