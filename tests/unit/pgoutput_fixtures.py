"""Decoded pgoutput for the unit tests: the domain_events relation and its Inserts built
with ``pgoutput_builder``, and the messages of a golden capture from a real server."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from uuid import UUID

from replication.decoder import decode_pgoutput, parse_copy_data
from replication.messages import Insert, Message, Relation, TupleData, XLogData
from replication.rows import RelationCache, parse_timestamptz
from replication.snapshot import SnapshotRow
from tests.unit import pgoutput_builder as b

RELID = 16384


def domain_events_cache(
    columns: list[tuple[int, str, int, int]] = b.DOMAIN_EVENTS_COLUMNS,
) -> RelationCache:
    """A cache holding the domain_events relation (``RELID``) with ``columns``."""
    msg = decode_pgoutput(b.relation(RELID, "public", "domain_events", columns))
    assert isinstance(msg, Relation)
    cache = RelationCache()
    cache.add(msg)
    return cache


def domain_events_insert(tup: bytes) -> Insert:
    """An Insert of ``tup`` into the domain_events relation."""
    msg = decode_pgoutput(b.insert(RELID, tup))
    assert isinstance(msg, Insert)
    return msg


def messages(frames: Iterable[bytes], cache: RelationCache) -> Iterator[Message]:
    """The pgoutput messages of the XLogData frames, in order (keepalives skipped); each
    Relation is added to ``cache`` as it passes, as the reader does."""
    for raw in frames:
        frame = parse_copy_data(raw)
        if not isinstance(frame, XLogData):
            continue
        msg = decode_pgoutput(frame.payload)
        if isinstance(msg, Relation):
            cache.add(msg)
        yield msg


def domain_event_inserts(name: str, cache: RelationCache) -> Iterator[Insert]:
    """The Inserts into domain_events of the golden capture ``name``."""
    for msg in messages(b.read_frames(name), cache):
        if isinstance(msg, Insert) and cache.get(msg.relation_id).name == "domain_events":
            yield msg


def as_selected(tup: TupleData) -> SnapshotRow:
    """The row as the snapshot's SELECT returns it, from a text-format tuple of
    domain_events (columns in the table's order)."""
    text = [None if v is None else v.decode() for v in tup.values]
    event_id, stream_id, stream_type, version, event_type, data, meta, key, created = text
    assert event_id and stream_id and stream_type and version and event_type
    assert data is not None and meta is not None and created is not None
    return (
        UUID(event_id),
        UUID(stream_id),
        stream_type,
        int(version),
        event_type,
        data,
        meta,
        key,
        parse_timestamptz(created),
    )
