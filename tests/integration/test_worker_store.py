"""The bootstrap worker's writes (``pipeline.bootstrap.store``) on a real database,
checked with plain SQL and libpq's own trace of the connection.

- A write is one transaction: its events share ``xmin``, and an event the store rejects
  takes the others of its write with it.
- A repeat (a retried activity) adds nothing and returns the first attempt's ids, or for
  :func:`emit_and_read` the first attempt's data, even when the retry's data differ.
- A write is one round trip: its statements go out together and the client waits once
  (one ``Sync``, which commits them: ``pipeline.roundtrip``).
- A rejected write raises psycopg's error for it (not a connection error), which the
  activities classify as not worth retrying.
- All of it holds through a real PgBouncer in transaction mode.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import psycopg
import pytest

from pipeline.bootstrap import store
from pipeline.bootstrap.pool import ConnectionPool
from pipeline.dev.layout import DevLayout
from pipeline.eventstore import NewEvent
from tests.integration.pgbouncer import pgbouncer

pytestmark = pytest.mark.integration

T = TypeVar("T")


@pytest.fixture
async def pool(fresh_db: str) -> AsyncIterator[ConnectionPool]:
    pool = ConnectionPool(fresh_db, max_size=1)
    try:
        yield pool
    finally:
        await pool.close()


def _event(stream: uuid.UUID, key: str, data: dict[str, object], **extra: object) -> NewEvent:
    fields: dict[str, object] = {
        "stream_id": stream,
        "stream_type": "organization",
        "event_type": "user.invited",
        "event_data": data,
        "idempotency_key": key,
        "event_metadata": {"source": "test", "causation_id": str(uuid.uuid4())},
        **extra,
    }
    return NewEvent(**fields)  # type: ignore[arg-type]


def _rows(dsn: str, keys: list[str]) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT idempotency_key, id, xmin::text, event_data FROM domain_events "
            "WHERE idempotency_key = ANY(%s) ORDER BY stream_id, stream_version",
            (keys,),
        ).fetchall()


async def _traced(pool: ConnectionPool, call: Callable[[], Awaitable[T]]) -> tuple[T, str]:
    """call's result and what its connection sent and received (libpq's trace); the pool
    holds one connection, so call uses the one traced here."""
    async with pool.connection() as conn:
        pass
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "libpq.trace"
        with trace.open("w") as out:
            async with pool.connection() as conn:
                conn.pgconn.trace(out.fileno())
            try:
                result = await call()
            finally:
                async with pool.connection() as conn:
                    conn.pgconn.untrace()
            out.flush()
            os.fsync(out.fileno())
        return result, trace.read_text(errors="replace")


def _sent(trace: str) -> list[str]:
    """The messages the client sent, in order: Sync, or a statement's first word."""
    sent: list[str] = []
    for line in trace.splitlines():
        fields = line.split("\t")
        if "F" not in fields[:3]:
            continue
        if "Sync" in fields:
            sent.append("Sync")
        elif "Parse" in fields or "Query" in fields:
            statement = re.search(r'"\s*(\w+)', line)
            sent.append(statement[1].upper() if statement else "?")
    return sent


async def test_a_write_is_one_transaction_in_one_round_trip(
    pool: ConnectionPool, fresh_db: str
) -> None:
    org, other = uuid.uuid4(), uuid.uuid4()
    events = [
        _event(org, f"k1-{org}", {"n": 1}),
        _event(other, f"k2-{org}", {"n": 2}),
        _event(org, f"k3-{org}", {"n": 3, "text": 'ünï 𝄞 "q" \\ '}),
    ]
    ids, trace = await _traced(pool, lambda: store.emit_events(pool, events))
    assert _sent(trace) == ["SELECT", "SELECT", "SELECT", "Sync"], trace

    rows = _rows(fresh_db, [e.idempotency_key for e in events])
    assert sorted(r[1] for r in rows) == sorted(ids)  # type: ignore[type-var]
    assert len({r[2] for r in rows}) == 1  # one transaction
    assert {r[0]: r[3] for r in rows} == {e.idempotency_key: e.event_data for e in events}

    again = await store.emit_events(pool, events)
    assert again == ids
    assert len(_rows(fresh_db, [e.idempotency_key for e in events])) == 3


async def test_emit_and_read_returns_the_first_attempts_data_in_one_round_trip(
    pool: ConnectionPool, fresh_db: str
) -> None:
    org = uuid.uuid4()
    key = f"invite-{org}"
    first = _event(org, key, {"invitation_id": "first", "expires_at": "2026-12-10"})
    stored, trace = await _traced(pool, lambda: store.emit_and_read(pool, first))
    assert stored == first.event_data
    assert _sent(trace) == ["SELECT", "SELECT", "Sync"], trace

    retry = _event(org, key, {"invitation_id": "second", "expires_at": "2027-01-01"})
    assert await store.emit_and_read(pool, retry) == first.event_data
    assert await store.find_by_key(pool, key) == first.event_data
    assert [r[3] for r in _rows(fresh_db, [key])] == [first.event_data]


async def test_a_rejected_event_takes_its_write_with_it(
    pool: ConnectionPool, fresh_db: str
) -> None:
    org = uuid.uuid4()
    good = _event(org, f"good-{org}", {"n": 1})
    # The store's contract: a metadata source is a string (sql/migrations/0005).
    bad = _event(org, f"bad-{org}", {"n": 2}, event_metadata={"source": 5})
    with pytest.raises(psycopg.Error) as raised:
        await store.emit_events(pool, [good, bad])
    assert not isinstance(raised.value, psycopg.OperationalError), raised.value
    assert "source" in str(raised.value)
    assert _rows(fresh_db, [good.idempotency_key, bad.idempotency_key]) == []
    with pytest.raises(psycopg.Error):
        await store.emit_and_read(pool, bad)
    # The pool's connection is usable after the failure (or replaced): the next write lands.
    assert len(await store.emit_events(pool, [good])) == 1
    assert len(_rows(fresh_db, [good.idempotency_key])) == 1


async def test_writes_through_a_transaction_mode_pooler(
    dev_layout: DevLayout, fresh_db: str
) -> None:
    """The worker may reach the database through PgBouncer in transaction mode (only the
    reader needs a direct connection): the one-trip transactions keep their meaning there,
    eight at once over a pool of connections."""
    dbname = fresh_db.rsplit("/", 1)[1]
    with pgbouncer(upstream_port=dev_layout.pg_port) as bouncer:
        pooled = ConnectionPool(bouncer.dsn(dbname), max_size=4)
        try:
            orgs = [uuid.uuid4() for _ in range(8)]
            pairs = [
                [_event(org, f"a-{org}", {"n": 1}), _event(org, f"b-{org}", {"n": 2})]
                for org in orgs
            ]
            ids = await asyncio.gather(*(store.emit_events(pooled, pair) for pair in pairs))
            read = await asyncio.gather(
                *(store.emit_and_read(pooled, _event(org, f"c-{org}", {"n": 3})) for org in orgs)
            )
            bad = _event(orgs[0], "bad", {"n": 4}, event_metadata={"source": 5})
            with pytest.raises(psycopg.Error):
                await store.emit_events(pooled, [_event(orgs[0], "d", {"n": 5}), bad])
            again = await store.emit_events(pooled, pairs[0])
        finally:
            await pooled.close()
    assert read == [{"n": 3}] * 8
    assert again == ids[0]
    keys = [e.idempotency_key for pair in pairs for e in pair]
    rows = _rows(fresh_db, [*keys, "d", "bad"])
    assert len(rows) == 16
    by_key = {r[0]: r for r in rows}
    for pair, pair_ids in zip(pairs, ids, strict=True):
        first, second = (by_key[e.idempotency_key] for e in pair)
        assert [first[1], second[1]] == pair_ids
        assert first[2] == second[2]  # one transaction each
