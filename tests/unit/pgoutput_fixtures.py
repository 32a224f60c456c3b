"""Decoded pgoutput for the unit tests: the domain_events relation and its Inserts built
with ``pgoutput_builder``, and the messages of a golden capture from a real server."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from replication.decoder import decode_pgoutput, parse_copy_data
from replication.messages import Insert, Message, Relation, XLogData
from replication.rows import RelationCache
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
