"""The Kafka value of an event: its layout, and the claim check that stands for an event
too large for a record (docs/events.md, "Claim checks").

Both sources of events build their value here, from the nine fields already encoded as
JSON: the stream (:mod:`replication.value_encoder`, from pgoutput's columns) and the initial
snapshot (:mod:`replication.snapshot`, from a SELECT); tests/unit/replication/test_snapshot.py checks
that the same row gives the same bytes both ways.
"""

from __future__ import annotations

from typing import Final

import orjson

# Above this size (key + value) an event travels as a claim check: the topic takes
# MAX_MESSAGE_BYTES (16 MiB) per record batch, and the headers and the batch's own
# framing need room too (a few hundred bytes; 64 KiB leaves plenty).
CLAIM_CHECK_BYTES: Final = 16 * 1024 * 1024 - 64 * 1024
# The header that marks a claim-check record (docs/events.md, "Claim checks").
CLAIM_CHECK_HEADER: Final = ("claim_check", b"1")
# The header that carries the event's type (its UTF-8 bytes), so a consumer routes a
# record without parsing its value; a record without it (older records, hand-written ones)
# is routed by its value. The reader sets it on every record of the topic (docs/events.md).
EVENT_TYPE_HEADER: Final = "event_type"
_BACKSLASH: Final = 0x5C  # every JSON escape starts with one


def needs_claim_check(key_bytes: int, value_bytes: int) -> bool:
    """Whether an event of this size travels as a claim check (see CLAIM_CHECK_BYTES)."""
    return key_bytes + value_bytes > CLAIM_CHECK_BYTES


def join_fields(parts: list[bytes]) -> bytes:
    """The value from its nine encoded fields, in this order: id, stream_id (the
    insides of JSON strings), stream_type, stream_version, event_type, event_data,
    event_metadata, idempotency_key, created_at (JSON values)."""
    (
        event_id,
        stream_id,
        stream_type,
        version,
        event_type,
        data,
        meta,
        key,
        created,
    ) = parts
    return b"".join(
        (
            b'{"id":"',
            event_id,
            b'","stream_id":"',
            stream_id,
            b'","stream_type":',
            stream_type,
            b',"stream_version":',
            version,
            b',"event_type":',
            event_type,
            b',"event_data":',
            data,
            b',"event_metadata":',
            meta,
            b',"idempotency_key":',
            key,
            b',"created_at":',
            created,
            b"}",
        )
    )


# The bytes join_fields adds around the parts (field names, quotes, braces).
_FRAMING: Final = len(join_fields([b""] * 9))


def join_reference(parts: list[bytes]) -> bytes:
    """The claim-check value: the row without event_data and event_metadata."""
    event_id, stream_id, stream_type, version, event_type, _, _, key, created = parts
    return b"".join(
        (
            b'{"id":"',
            event_id,
            b'","stream_id":"',
            stream_id,
            b'","stream_type":',
            stream_type,
            b',"stream_version":',
            version,
            b',"event_type":',
            event_type,
            b',"idempotency_key":',
            key,
            b',"created_at":',
            created,
            b"}",
        )
    )


def assemble(parts: list[bytes]) -> tuple[bytes, bool]:
    """The value of an event from its nine encoded fields (the order of :func:`join_fields`), and
    whether it is a claim check; the full value is never built for one."""
    size = _FRAMING + sum(len(p) for p in parts)
    if needs_claim_check(len(parts[1]), size):
        return join_reference(parts), True
    return join_fields(parts), False


def event_type_bytes(encoded: bytes) -> bytes:
    """The event type's UTF-8 bytes (the :data:`EVENT_TYPE_HEADER` value) from the
    event_type field as encoded for the value (a JSON string, the fifth of the nine
    fields): the quotes stripped, or, when the type holds an escape (a quote, a
    backslash, a control character), the string decoded. Taken from the field, never
    from the finished value, where a key of event_data could spell the same name."""
    # An int operand: a memchr, where a bytes operand costs ~2,000 instructions more
    # per event (callgrind, bench/bench_hotpath.py's replay).
    if _BACKSLASH in encoded:
        text: str = orjson.loads(encoded)
        return text.encode()
    return encoded[1:-1]
