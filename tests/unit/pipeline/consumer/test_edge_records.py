"""The Faust edge hands the handlers a record's headers, in either form Faust carries them
(aiokafka's list of tuples; a mapping), and routing reads the ``event_type`` one."""

from __future__ import annotations

import pytest
from faust.types.tuples import Message

from pipeline import events as ev
from pipeline.agents.routing import route
from pipeline.consumer.edge import to_record as _record

VALUE = b'{"event_type": "organization.bootstrap.initiated"}'


def _message(headers: object) -> Message:
    return Message("domain-events", 2, 41, 0.0, 0, headers, b"k", VALUE, None)


@pytest.mark.parametrize(
    "headers",
    [
        [("commit_lsn", b"0/1"), ("event_type", ev.QUEUE_PENDING.encode())],  # aiokafka's
        (("commit_lsn", b"0/1"), ("event_type", ev.QUEUE_PENDING.encode())),
        {"commit_lsn": b"0/1", "event_type": ev.QUEUE_PENDING.encode()},
    ],
)
def test_the_header_reaches_routing_in_every_form_faust_carries(headers: object) -> None:
    record = _record(_message(headers))
    assert record.headers == (("commit_lsn", b"0/1"), ("event_type", ev.QUEUE_PENDING.encode()))
    assert (record.where, record.key, record.value) == ("domain-events[2]@41", b"k", VALUE)
    assert route(record).event_type == ev.QUEUE_PENDING  # the header, not the value


@pytest.mark.parametrize("headers", [None, [], {}, [("commit_lsn", b"0/1")]])
def test_without_the_header_the_value_routes(headers: object) -> None:
    assert route(_record(_message(headers))).event_type == ev.BOOTSTRAP_INITIATED


def test_a_header_without_a_value_is_an_empty_one() -> None:
    # Kafka allows a null header value; it reaches the handlers as b"" (an event_type of
    # "", which no handler acts on and which the decode rejects against the value).
    record = _record(_message([("event_type", None)]))
    assert record.headers == (("event_type", b""),)
    assert route(record).event_type == ""
