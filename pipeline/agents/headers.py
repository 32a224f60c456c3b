"""A domain-events record's headers: its type, its position, whether it is a claim check.

Pure, and cheap: routing reads the ``event_type`` header (``EVENT_TYPE_HEADER``) of every
record the consumer takes, so an agent skips a record of another type without parsing its
value. The record format is the replication reader's contract (:mod:`pipeline.agents.records`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from pipeline import events as ev
from pipeline.agents.errors import RecordRejected
from replication.lsn import LSN, Position
from replication.record_value import EVENT_TYPE_HEADER

Headers = Sequence[tuple[str, bytes]]

REQUIRED_HEADERS: Final = ("commit_lsn", "idx", "xid", "commit_ts")
_REQUIRED_HEADER_SET: Final = frozenset(REQUIRED_HEADERS)
CLAIM_CHECK: Final = "claim_check"


def header_map(headers: Headers | None) -> dict[str, bytes]:
    """Headers as a dict (the last value wins when a name repeats)."""
    return {name: value for name, value in headers or ()}


def header_event_type(headers: Headers | None) -> str | None:
    """The ``event_type`` header's value, None when the record has none or it is not UTF-8.

    The last one wins when the name repeats (as in :func:`header_map`): routing and the
    check in :func:`decode_row` read the same one. A header that is not UTF-8 is ignored,
    not trusted: the record is then routed by its value, as one without the header.
    """
    found: bytes | None = None
    for name, value in headers or ():
        if name == EVENT_TYPE_HEADER:
            found = value
    return header_text(found)


def header_text(found: bytes | None) -> str | None:
    if found is None:
        return None
    try:
        return found.decode()
    except UnicodeDecodeError:
        return None


def parse_position(headers: Mapping[str, bytes]) -> Position:
    """The event's position from its ``commit_lsn`` and ``idx`` headers."""
    try:
        lsn = LSN.parse(headers["commit_lsn"].decode())
        idx = int(headers["idx"].decode())
        return Position(lsn, idx)
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        raise RecordRejected("bad_headers", f"no valid commit_lsn/idx: {exc}") from exc


def is_claim_check(headers: Headers | None) -> bool:
    """Whether the record is a claim check (its payload is in the store, not the value)."""
    # A loop, not any(genexpr): every record asks, and the generator costs more.
    for name, value in headers or ():  # noqa: SIM110
        if name == CLAIM_CHECK and value == b"1":
            return True
    return False


def check_headers(hmap: Mapping[str, bytes]) -> Position:
    if not hmap.keys() >= _REQUIRED_HEADER_SET:
        missing = [name for name in REQUIRED_HEADERS if name not in hmap]
        raise RecordRejected("bad_headers", f"missing headers: {', '.join(missing)}")
    return parse_position(hmap)


# The events whose free-form JSON goes on: a pending event's ``input`` is the queue row's
# event_data, and the enqueue agent copies an initiated event's data into it.
_EXACT_TYPES: Final = frozenset(t.encode() for t in (ev.QUEUE_PENDING, ev.BOOTSTRAP_INITIATED))


def exact_numbers(hmap: Mapping[str, bytes]) -> bool:
    """Whether a record's numbers must be read exactly: its type's JSON is written back
    (or it names no type). The others' data are strings the folds read, so their parse
    keeps orjson's fast path."""
    kind = hmap.get(EVENT_TYPE_HEADER)
    return kind is None or kind in _EXACT_TYPES
