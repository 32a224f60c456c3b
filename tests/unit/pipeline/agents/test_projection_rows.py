"""The projection's decoding (records.projection_row) is decode_record(...).as_row(): the
same row, the same position, the same rejection (kind and detail) for every record (pure)."""

from __future__ import annotations

import uuid

import orjson
import pytest

from pipeline import events as ev
from pipeline.agents import records
from pipeline.agents.errors import RecordRejected
from pipeline.agents.records import (
    DomainEvent,
    Validator,
    decode_record,
    decode_row,
    projection_row,
    projection_row_of,
)
from pipeline.contract import validate_event
from tests.unit.pipeline.agents.samples import HEADERS, ORG, row

KEY = str(ORG).encode()
WF = ev.workflow_id_for(str(ORG))
JOB = str(uuid.uuid4())
TYPED = [*HEADERS, ("event_type", ev.BOOTSTRAP_INITIATED.encode())]


def outcome(
    decode: object, key: bytes | None, value: object, headers: object, validate: Validator | None
) -> object:
    """What decoding gives: the row and position, or the rejection's (kind, detail)."""
    try:
        got = decode(key, value, headers, validate)  # type: ignore[operator]
    except RecordRejected as exc:
        return ("rejected", exc.kind, exc.detail)
    if isinstance(got, DomainEvent):
        return (got.as_row(), got.position)
    return got


def as_dict(value: bytes) -> dict[str, object]:
    parsed = orjson.loads(value)
    assert isinstance(parsed, dict)
    return parsed


CASES: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]] = [
    (KEY, orjson.dumps(row()), HEADERS),
    (KEY, orjson.dumps(row()), TYPED),
    (KEY, orjson.dumps(row(idempotency_key="k-ü")), HEADERS),
    (
        KEY,
        orjson.dumps(
            row(
                event_type=ev.QUEUE_COMPLETED,
                event_data={"job_id": JOB, "workflow_id": WF},
            )
        ),
        [*HEADERS, ("event_type", ev.QUEUE_COMPLETED.encode())],
    ),
    (
        KEY,
        orjson.dumps(
            row(
                event_type=ev.INVITATION_EMAIL_SENT,
                event_data={"invitation_id": str(uuid.uuid4()), "email": "zoë@example.org"},
            )
        ),
        HEADERS,
    ),
    # Rejections, each kind, in the order decoding checks them.
    (KEY, b"{not json", HEADERS),
    (KEY, None, HEADERS),
    (KEY, b"[1]", HEADERS),
    (KEY, orjson.dumps(row()), HEADERS[1:]),
    (KEY, orjson.dumps(row()), [("commit_lsn", b"nope"), *HEADERS[1:]]),
    (KEY, orjson.dumps(row()), [*HEADERS[:2], ("xid", b"x"), HEADERS[3]]),
    (KEY, orjson.dumps(row()), [*HEADERS[:3], ("commit_ts", b"yesterday")]),
    (KEY, orjson.dumps(row(stream_version=0)), HEADERS),
    (KEY, orjson.dumps({"id": "x"}), HEADERS),
    (KEY, orjson.dumps(row(event_data=[])), HEADERS),
    (KEY, orjson.dumps(row(idempotency_key=3)), HEADERS),
    (KEY, orjson.dumps(row()), [*HEADERS, ("event_type", ev.QUEUE_PENDING.encode())]),
    (KEY, orjson.dumps(row()), [*TYPED, ("event_type", b"\xff")]),  # not UTF-8: ignored
    (b"someone-else", orjson.dumps(row()), HEADERS),
    (None, orjson.dumps(row()), HEADERS),
    (KEY, orjson.dumps(row(event_data={"name": "Acme", "subdomain": "acme"})), HEADERS),
    (KEY, orjson.dumps(row(id="not-a-uuid")), HEADERS),
    (KEY, orjson.dumps(row(created_at="2026-13-01")), HEADERS),
    (KEY, orjson.dumps(row(stream_id="NOT-A-UUID")), HEADERS),
    (
        KEY,
        orjson.dumps(
            row(
                event_type=ev.QUEUE_COMPLETED,
                event_data={"job_id": JOB, "workflow_id": f"org-bootstrap-{uuid.uuid4()}"},
            )
        ),
        HEADERS,
    ),
]


@pytest.mark.parametrize("validate", [validate_event, None], ids=["contract", "envelope"])
@pytest.mark.parametrize(("key", "value", "headers"), CASES)
def test_projection_row_is_decode_record_as_row(
    key: bytes | None,
    value: bytes | None,
    headers: list[tuple[str, bytes]],
    validate: Validator | None,
) -> None:
    expected = outcome(decode_record, key, value, headers, validate)
    got = outcome(projection_row, key, value, headers, validate)
    assert got == expected
    if isinstance(expected, tuple) and expected[0] != "rejected":
        # The same values and types, key by key, in the same order.
        assert list(got[0]) == list(expected[0])  # type: ignore[index]
        assert [type(v) for v in got[0].values()] == [  # type: ignore[index]
            type(v)
            for v in expected[0].values()  # type: ignore[index]
        ]
    if value is not None and value.startswith(b"{") and value != b"{not json":
        parsed = as_dict(value)
        assert outcome(projection_row_of, key, parsed, headers, validate) == outcome(
            decode_row, key, parsed, headers, validate
        )


def test_a_non_canonical_but_valid_uuid_is_read_as_before_without_the_contract() -> None:
    upper = str(ORG).upper()
    value = orjson.dumps(row(stream_id=upper))
    expected = outcome(decode_record, upper.encode(), value, HEADERS, None)
    assert outcome(projection_row, upper.encode(), value, HEADERS, None) == expected
    assert expected[0] == "rejected"  # type: ignore[index]  # the key is the canonical text
    accepted = outcome(projection_row, KEY, value, HEADERS, None)
    assert accepted == outcome(decode_record, KEY, value, HEADERS, None)
    assert accepted[0]["stream_id"] == ORG  # type: ignore[index]


def test_stream_ids_are_parsed_once_per_stream_and_the_memory_is_bounded() -> None:
    value = orjson.dumps(row())
    first = projection_row(KEY, value, HEADERS)
    assert records._STREAM_IDS[str(ORG)] == (ORG, str(ORG))
    assert projection_row(KEY, value, HEADERS) == first
    # The text is the cache's key: another spelling of the same id is checked on its own.
    upper = orjson.dumps(row(stream_id=str(ORG).upper()))
    with pytest.raises(RecordRejected, match="bad_key"):
        projection_row(str(ORG).upper().encode(), upper, HEADERS, None)
    assert projection_row(KEY, upper, HEADERS, None)[0]["stream_id"] == ORG
    for _ in range(records._STREAM_IDS_MAX + 1):
        other = uuid.uuid4()
        projection_row(str(other).encode(), orjson.dumps(row(stream_id=str(other))), HEADERS)
    assert len(records._STREAM_IDS) <= records._STREAM_IDS_MAX
