"""Which agent acts on a record: its event type, read without parsing the value.

The reader writes each record's event type in an ``event_type`` header
(:data:`replication.record_value.EVENT_TYPE_HEADER`), so the enqueue and starter agents,
which each act on one type, pass over every other record without parsing its value. A
record without the header, or with one that is not UTF-8 (older records, hand-written
ones), is routed by its value instead, parsed once: the parsed row travels with the
record to the handler, which decodes it without parsing again. Either way an agent
parses a record's value at most once, and only when it handles the record (the
projection agent handles them all, and parses each once when it decodes it).

The header is trusted for routing only. Decoding checks it against the value
(:func:`pipeline.agents.records.decode_row`), so a record whose header disagrees with its
value is rejected by every agent that decodes it: the projection agent dead-letters it,
and no agent acts on it (one routed by the header finds the mismatch; one its value is
for never saw it). Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.agents.errors import RecordRejected
from pipeline.agents.headers import header_event_type
from pipeline.agents.records import parse_value

if TYPE_CHECKING:
    from pipeline.agents.runtime import Record


@dataclass(frozen=True, slots=True)
class Routed:
    """A record with the event type it is routed by.

    ``row`` is the value already parsed when routing had to parse it (no usable header),
    for the handler to decode instead of parsing again; None when the header said the
    type. A handler owns its ``Routed``: the row is not shared between agents.
    """

    record: Record
    event_type: str | None
    row: dict[str, Any] | None = None


def route(record: Record) -> Routed:
    """The record's event type: its ``event_type`` header, else its value's ``event_type``
    (None when the value is not a JSON object with a string ``event_type``). No validation:
    the handler's decode does that, and the projection agent dead-letters what fails it."""
    event_type = header_event_type(record.headers)
    if event_type is not None:
        return Routed(record, event_type)
    try:
        row = parse_value(record.value)
    except RecordRejected:
        return Routed(record, None)
    kind = row.get("event_type")
    return Routed(record, kind if isinstance(kind, str) else None, row)
