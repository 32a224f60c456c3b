"""Decoding a Kafka record of the domain-events topic into a :class:`DomainEvent`.

Pure: bytes in, a value or :class:`RecordRejected` out. The record format is the
replication reader's contract: key = stream_id (UTF-8), value = the ``domain_events`` row
as JSON, headers ``commit_lsn`` (``X/X``), ``idx``, ``xid`` and ``commit_ts``. Every agent
decodes the same way, so a record is either good for all of them or dead-lettered once.

Routing reads the ``event_type`` header (:data:`EVENT_TYPE_HEADER`) the reader writes
with each record, so an agent skips a record of another type without parsing its value
(:mod:`pipeline.agents.routing`). What the header says is checked against the value
wherever a record is decoded: a header that disagrees with its value is a rejection
(``bad_headers``), so a lying header cannot route a record past the agent its value is
for and still have it projected; it is dead-lettered once, and no agent acts on it. The headers alone are read by
:mod:`pipeline.agents.headers`.

The value carries jsonb exactly as PostgreSQL printed it, so it may hold what orjson
cannot read (nesting past 1024 levels, numbers past a double's range): :func:`loads`
then falls back to the standard library's parser with a higher depth limit, numbers
past a double's range as :class:`~decimal.Decimal` (:mod:`pipeline.jsontext`). A record marked ``claim_check``
holds the row without ``event_data`` and ``event_metadata``; the caller reads those
from ``domain_events`` by id (:mod:`pipeline.agents.claimcheck`) and hands them to
:func:`decode_row`.

The projection decodes every record of the topic: :func:`projection_row` gives it the
row its appliers take (``DomainEvent.as_row()``) after the same checks, without building
the :class:`DomainEvent`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from pipeline import events as ev
from pipeline.agents.errors import RecordRejected
from pipeline.agents.headers import (
    Headers,
    check_headers,
    exact_numbers,
    header_map,
    header_text,
)
from pipeline.contract import ContractViolation, validate_event
from pipeline.jsontext import MAX_JSON_DEPTH, loads
from replication.lsn import Position
from replication.record_value import EVENT_TYPE_HEADER

Validator = Callable[[Mapping[str, object]], None]

_ROW_FIELDS: Final = (
    "id",
    "stream_id",
    "stream_type",
    "stream_version",
    "event_type",
    "event_data",
    "event_metadata",
    "created_at",
)
_ROW_FIELD_SET: Final = frozenset(_ROW_FIELDS)
# Events whose event_data names the workflow: it must be the deterministic id of the
# stream's organization (DESIGN.md invariant 3), or the projection and Temporal disagree.
_WORKFLOW_ID_TYPES: Final = frozenset(
    {ev.QUEUE_PENDING, ev.QUEUE_CLAIMED, ev.BOOTSTRAP_WORKFLOW_STARTED, ev.QUEUE_COMPLETED}
)


@dataclass(frozen=True, slots=True)
class DomainEvent:
    """One event of the store as read from Kafka, with its position in the log."""

    id: uuid.UUID
    stream_id: uuid.UUID
    stream_type: str
    stream_version: int
    event_type: str
    event_data: dict[str, object]
    event_metadata: dict[str, object]
    idempotency_key: str | None
    created_at: datetime
    position: Position
    commit_ts: datetime
    xid: int

    def as_row(self) -> dict[str, object]:
        """The event as the dict row the projection appliers take.

        The position is there twice, as ``position`` and as ``commit_lsn`` + ``idx``,
        because appliers written against either form take the same rows.
        """
        return {
            "id": self.id,
            "stream_id": self.stream_id,
            "stream_type": self.stream_type,
            "stream_version": self.stream_version,
            "event_type": self.event_type,
            "event_data": self.event_data,
            "event_metadata": self.event_metadata,
            "idempotency_key": self.idempotency_key,
            "created_at": self.created_at,
            "position": self.position,
            "commit_lsn": self.position.commit_lsn,
            "idx": self.position.idx,
            "commit_ts": self.commit_ts,
            "xid": self.xid,
        }


def _timestamp(text: object, what: str) -> datetime:
    if not isinstance(text, str):
        raise RecordRejected("bad_envelope", f"{what} is not an RFC 3339 string")
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise RecordRejected("bad_envelope", f"{what} {text!r} is not RFC 3339") from exc


def _uuid(value: object, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError as exc:
        raise RecordRejected("bad_envelope", f"{what} {value!r} is not a UUID") from exc


# A stream's events come many at a time (a bootstrap, a batch of invitations): its id is
# parsed and printed once for all of them. Bounded: cleared when full.
_STREAM_IDS: dict[str, tuple[uuid.UUID, str]] = {}
_STREAM_IDS_MAX: Final = 4096


def _stream_id(value: object) -> tuple[uuid.UUID, str]:
    """:func:`_uuid` of a stream id, with its canonical text (what the record key must be)."""
    text = value if type(value) is str else None
    if text is not None:
        known = _STREAM_IDS.get(text)
        if known is not None:
            return known
    stream_id = _uuid(value, "stream_id")
    pair = (stream_id, str(stream_id))
    if text is not None:
        if len(_STREAM_IDS) >= _STREAM_IDS_MAX:
            _STREAM_IDS.clear()
        _STREAM_IDS[text] = pair
    return pair


def _check_envelope(row: Mapping[str, object]) -> None:
    if not row.keys() >= _ROW_FIELD_SET:  # one set comparison while nothing is missing
        missing = [name for name in _ROW_FIELDS if name not in row]
        raise RecordRejected("bad_envelope", f"missing fields: {', '.join(missing)}")
    if not isinstance(row["event_type"], str) or not isinstance(row["stream_type"], str):
        raise RecordRejected("bad_envelope", "event_type and stream_type must be strings")
    version = row["stream_version"]
    if type(version) is not int or version < 1:
        raise RecordRejected("bad_envelope", f"stream_version {version!r} is not >= 1")
    for name in ("event_data", "event_metadata"):
        if not isinstance(row[name], dict):
            raise RecordRejected("bad_envelope", f"{name} is not an object")
    key = row.get("idempotency_key")
    if key is not None and not isinstance(key, str):
        raise RecordRejected("bad_envelope", "idempotency_key is neither a string nor null")


def decode_record(
    key: bytes | None,
    value: bytes | None,
    headers: Headers | None,
    validate: Validator | None = validate_event,
) -> DomainEvent:
    """Decode and check one record; raises :class:`RecordRejected` saying why not.

    ``validate`` is the contract check (``pipeline.contract.validate_event`` by default,
    None in unit tests of the envelope alone); its :class:`ContractViolation` becomes a
    rejection whose detail names the offending JSON path.
    """
    hmap = header_map(headers)
    position = check_headers(hmap)  # before the value: bad headers are named as such
    row = parse_value(value, exact=exact_numbers(hmap))
    return _decode(key, row, hmap, position, validate=validate)


def parse_value(value: bytes | None, *, exact: bool = True) -> dict[str, Any]:
    """A record's value as the row it holds; raises :class:`RecordRejected` saying why not.

    ``exact`` as :func:`pipeline.jsontext.loads` takes it (:func:`exact_numbers`).
    """
    if value is None:
        raise RecordRejected("bad_value", "the record has no value")
    try:
        row = loads(value, exact=exact)
    except RecursionError as exc:
        raise RecordRejected("bad_value", f"value nests deeper than {MAX_JSON_DEPTH}") from exc
    except ValueError as exc:  # orjson's and json's decode errors are ValueErrors
        raise RecordRejected("bad_value", f"value is not JSON: {exc}") from exc
    if not isinstance(row, dict):
        raise RecordRejected("bad_value", "value is not a JSON object")
    return row


def decode_row(
    key: bytes | None,
    row: dict[str, Any],
    headers: Headers | None,
    validate: Validator | None = validate_event,
) -> DomainEvent:
    """:func:`decode_record` of a value already parsed (a claim check, resolved)."""
    hmap = header_map(headers)
    return _decode(key, row, hmap, check_headers(hmap), validate=validate)


def _decode(
    key: bytes | None,
    row: dict[str, Any],
    hmap: Mapping[str, bytes],
    position: Position,
    *,
    validate: Validator | None,
) -> DomainEvent:
    event_id, stream_id, created_at, commit_ts, xid = _checked(key, row, hmap, validate)
    return DomainEvent(
        id=event_id,
        stream_id=stream_id,
        stream_type=row["stream_type"],
        stream_version=row["stream_version"],
        event_type=row["event_type"],
        event_data=row["event_data"],
        event_metadata=row["event_metadata"],
        idempotency_key=row.get("idempotency_key"),
        created_at=created_at,
        position=position,
        commit_ts=commit_ts,
        xid=xid,
    )


def _checked(
    key: bytes | None,
    row: dict[str, Any],
    hmap: Mapping[str, bytes],
    validate: Validator | None,
) -> tuple[uuid.UUID, uuid.UUID, datetime, datetime, int]:
    """Every check of a decoded row, in order; its id, stream id, created_at, commit_ts and
    xid, typed. The one implementation behind :func:`_decode` and :func:`_projection_row`."""
    _check_envelope(row)
    # The header's bytes from the map (the last one wins, as header_event_type reads it).
    routed_as = header_text(hmap.get(EVENT_TYPE_HEADER))
    if routed_as is not None and routed_as != row["event_type"]:
        raise RecordRejected(
            "bad_headers",
            f"the event_type header {routed_as!r} is not the value's {row['event_type']!r}",
        )
    if validate is not None:
        try:
            validate(row)
        except ContractViolation as exc:
            raise RecordRejected("contract", f"{exc.path}: {exc}") from exc
    stream_id, stream_text = _stream_id(row["stream_id"])
    if key is None or key.decode(errors="replace") != stream_text:
        raise RecordRejected("bad_key", f"record key {key!r} is not the stream_id {stream_id}")
    data: dict[str, object] = row["event_data"]
    if row["event_type"] in _WORKFLOW_ID_TYPES:
        expected = ev.workflow_id_for(stream_text)
        if data.get("workflow_id") != expected:
            raise RecordRejected(
                "bad_workflow_id",
                f"workflow_id {data.get('workflow_id')!r} is not {expected!r}",
            )
    try:
        xid = int(hmap["xid"].decode())
    except ValueError as exc:
        raise RecordRejected("bad_headers", f"xid {hmap['xid']!r} is not an integer") from exc
    return (
        _uuid(row["id"], "id"),
        stream_id,
        _timestamp(row["created_at"], "created_at"),
        _timestamp(hmap["commit_ts"].decode(errors="replace"), "commit_ts header"),
        xid,
    )


# ---- the projection's rows: the same checks, no DomainEvent ---------------------------


def projection_row(
    key: bytes | None,
    value: bytes | None,
    headers: Headers | None,
    validate: Validator | None = validate_event,
) -> tuple[dict[str, object], Position]:
    """:func:`decode_record` as the projection takes it: ``DomainEvent.as_row()`` of the
    event and its position, with the same checks and rejections, without building the
    event (the projection folds every record of the topic, so this is its hot path)."""
    hmap = header_map(headers)
    position = check_headers(hmap)  # before the value: bad headers are named as such
    row = parse_value(value, exact=exact_numbers(hmap))
    return _projection_row(key, row, hmap, position, validate), position


def projection_row_of(
    key: bytes | None,
    row: dict[str, Any],
    headers: Headers | None,
    validate: Validator | None = validate_event,
) -> tuple[dict[str, object], Position]:
    """:func:`projection_row` of a value already parsed (a claim check, resolved)."""
    hmap = header_map(headers)
    position = check_headers(hmap)
    return _projection_row(key, row, hmap, position, validate), position


def _projection_row(
    key: bytes | None,
    row: dict[str, Any],
    hmap: Mapping[str, bytes],
    position: Position,
    validate: Validator | None,
) -> dict[str, object]:
    event_id, stream_id, created_at, commit_ts, xid = _checked(key, row, hmap, validate)
    # The keys and values of DomainEvent.as_row, in its order.
    return {
        "id": event_id,
        "stream_id": stream_id,
        "stream_type": row["stream_type"],
        "stream_version": row["stream_version"],
        "event_type": row["event_type"],
        "event_data": row["event_data"],
        "event_metadata": row["event_metadata"],
        "idempotency_key": row.get("idempotency_key"),
        "created_at": created_at,
        "position": position,
        "commit_lsn": position.commit_lsn,
        "idx": position.idx,
        "commit_ts": commit_ts,
        "xid": xid,
    }
