"""A dead letter's headers (pure)."""

from __future__ import annotations

from pipeline.agents.deadletter import dead_letter_headers
from pipeline.agents.errors import RecordRejected
from tests.unit.pipeline.agents.samples import HEADERS


def test_dead_letter_headers_keep_the_originals_and_say_why_and_where() -> None:
    got = dict(
        dead_letter_headers(
            [*HEADERS, ("reason", b"old")],
            RecordRejected("contract", "event_data.admins: too short"),
            topic="domain-events",
            partition=3,
            offset=42,
        )
    )
    assert got["commit_lsn"] == b"16/B374D848"
    assert got["idx"] == b"2"
    assert got["reason"] == b"contract: event_data.admins: too short"
    assert got["reason_kind"] == b"contract"
    assert (got["original_topic"], got["original_partition"], got["original_offset"]) == (
        b"domain-events",
        b"3",
        b"42",
    )
