"""Reading the fields of an event row, as the projections receive it.

An event row is a mapping with the ``domain_events`` columns (``event_data`` decoded, ids
and times either typed or as their JSON text) plus its position: ``commit_lsn`` (``X/X``
text or an :class:`~replication.lsn.LSN`) and ``idx``, or ``position`` (a
:class:`~replication.lsn.Position` or its ``X/X#idx`` text). A row that lacks a field a
projection needs raises :class:`ProjectionError`, which the caller dead-letters.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime

from pipeline.errors import PipelineError
from replication.errors import LSNParseError
from replication.lsn import LSN, Position

EventRow = Mapping[str, object]


class ProjectionError(PipelineError):
    """An event row cannot be folded: a field is missing or has the wrong type."""


def _describe(row: EventRow) -> str:
    return f"{row.get('event_type')!r} event {row.get('id')!r}"


def position_of(row: EventRow) -> Position:
    """The event's position: its ``position``, else its ``commit_lsn`` and ``idx``.

    The agents' rows carry both forms (:func:`pipeline.agents.records.projection_row`,
    the keys of :meth:`~pipeline.agents.records.DomainEvent.as_row`); rows built by other
    callers may carry either.
    """
    pos = row.get("position")
    if isinstance(pos, Position):
        return pos
    if pos is not None:
        try:
            return Position.parse(str(pos))
        except LSNParseError as exc:
            raise ProjectionError(f"{_describe(row)}: {exc}") from exc
    lsn, idx = row.get("commit_lsn"), row.get("idx")
    try:
        commit_lsn = lsn if isinstance(lsn, LSN) else LSN.parse(str(lsn))
    except LSNParseError as exc:
        raise ProjectionError(f"{_describe(row)}: {exc}") from exc
    if isinstance(idx, bool) or not isinstance(idx, int) or idx < 0:
        raise ProjectionError(f"{_describe(row)}: idx must be a non-negative int, got {idx!r}")
    return Position(commit_lsn, idx)


def event_type(row: EventRow) -> str:
    """The row's ``event_type``."""
    value = row.get("event_type")
    if not isinstance(value, str):
        raise ProjectionError(f"event {row.get('id')!r} has no event_type")
    return value


def event_data(row: EventRow) -> Mapping[str, object]:
    """The row's decoded ``event_data``."""
    data = row.get("event_data")
    # A dict first: isinstance against the Mapping ABC costs more than the fold around it.
    if type(data) is not dict and not isinstance(data, Mapping):
        raise ProjectionError(f"{_describe(row)}: event_data is not an object")
    return data


def uuid_of(value: object, what: str, row: EventRow) -> uuid.UUID:
    """``value`` as a UUID (accepts a UUID or its text)."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError as exc:
        raise ProjectionError(f"{_describe(row)}: {what} {value!r} is not a UUID") from exc


def stream_id(row: EventRow) -> uuid.UUID:
    """The row's ``stream_id``."""
    return uuid_of(row.get("stream_id"), "stream_id", row)


def time_of(value: object, what: str, row: EventRow) -> datetime:
    """``value`` as an aware datetime (accepts a datetime or RFC 3339 text)."""
    try:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise ProjectionError(f"{_describe(row)}: {what} {value!r} is not a time") from exc
    if moment.tzinfo is None:
        raise ProjectionError(f"{_describe(row)}: {what} {value!r} has no UTC offset")
    return moment


def created_at(row: EventRow) -> datetime:
    """When the event was appended."""
    return time_of(row.get("created_at"), "created_at", row)


def text(data: Mapping[str, object], key: str, row: EventRow) -> str:
    """A required string field of ``event_data``."""
    value = data.get(key)
    if not isinstance(value, str):
        raise ProjectionError(f"{_describe(row)}: event_data.{key} must be a string")
    return value
