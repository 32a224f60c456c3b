"""The handlers' group commit (pipeline.agents.groupcommit) on a real PostgreSQL, checked
with plain SQL: concurrent emits share commits (the rows of one group carry one xmin),
each event is appended once and returns its own id, a stream's events keep the order
they were given, a statement that fails fails only its own caller, and a stream whose
lock another transaction holds holds up no other stream."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest

from pipeline.agents import effects, jobstore
from pipeline.agents.enqueue import pending_event_for, pending_event_id
from pipeline.agents.groupcommit import GroupCommit
from pipeline.agents.starter import claimed_event, plan_emitted
from pipeline.eventstore import NewEvent

from .test_handoff_statement import _initiated

pytestmark = pytest.mark.integration


def _event(stream: uuid.UUID, n: int, *, stream_type: str = "organization") -> NewEvent:
    return NewEvent(
        stream_id=stream,
        stream_type=stream_type,
        event_type="invitation.email.sent",
        event_data={"n": n},
        idempotency_key=f"group-commit-test:{stream}:{n}",
    )


def _rows(dsn: str) -> list[tuple[object, ...]]:
    """(id, stream_id, stream_version, n, the inserting transaction) of every event."""
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT id, stream_id, stream_version, (event_data->>'n')::int, xmin::text "
            "FROM domain_events ORDER BY stream_id, stream_version"
        ).fetchall()


async def test_concurrent_emits_share_commits_and_each_gets_its_id(fresh_db: str) -> None:
    db = effects.Database(fresh_db, "t", size=4)
    group = GroupCommit(db)
    streams = [uuid.uuid4() for _ in range(40)]
    events = [_event(s, n) for n, s in enumerate(streams)]
    try:
        ids = await asyncio.gather(*(effects.emit_event(group, e) for e in events))
        # A repeat (as after a lost acknowledgement) appends nothing and returns the same ids.
        again = await asyncio.gather(*(effects.emit_event(group, e) for e in events))

        async def lock_timeout() -> object:
            async with db.borrow() as conn:
                row = await (await conn.execute("SHOW lock_timeout")).fetchone()
                await asyncio.sleep(0.05)  # so the four borrowers hold the four connections
            return row[0] if row else None

        # A group's lock timeout lasts for its own transaction only.
        timeouts = await asyncio.gather(*(lock_timeout() for _ in range(4)))
    finally:
        await group.close()
        await db.close()
    assert timeouts == ["0"] * 4
    rows = _rows(fresh_db)
    assert len(rows) == len(events)
    by_n = {row[3]: row for row in rows}
    assert [by_n[n][0] for n in range(len(events))] == ids == again
    # 40 emits given at once: the first goes alone, the others wait for it and go together.
    transactions = {row[4] for row in rows}
    assert len(transactions) <= 3, transactions


async def test_a_streams_events_keep_their_order(fresh_db: str) -> None:
    db = effects.Database(fresh_db, "t", size=2)
    group = GroupCommit(db)
    a, b = sorted([uuid.uuid4(), uuid.uuid4()], reverse=True)  # b sorts before a
    given = [(a, 0), (b, 1), (a, 2), (b, 3), (a, 4), (a, 5), (b, 6)]
    try:
        await asyncio.gather(*(effects.emit_event(group, _event(s, n)) for s, n in given))
    finally:
        await group.close()
        await db.close()
    rows = _rows(fresh_db)
    for stream in (a, b):
        in_store = [row[3] for row in rows if row[1] == stream]
        assert in_store == [n for s, n in given if s == stream]
        versions = [row[2] for row in rows if row[1] == stream]
        assert versions == list(range(1, len(versions) + 1))


async def test_a_failing_statement_fails_only_its_caller(fresh_db: str) -> None:
    db = effects.Database(fresh_db, "t", size=2)
    group = GroupCommit(db)
    good = [_event(uuid.uuid4(), n) for n in range(10)]
    # api.emit_domain_event raises not_null_violation for a stream without a type.
    bad = _event(uuid.uuid4(), 99, stream_type=None)  # type: ignore[arg-type]
    try:
        # Hold the group back behind one statement so the rest, bad one included, go together.
        first = asyncio.ensure_future(effects.emit_event(group, _event(uuid.uuid4(), 100)))
        await asyncio.sleep(0)
        results = await asyncio.gather(
            *(effects.emit_event(group, e) for e in good[:5]),
            effects.emit_event(group, bad),
            *(effects.emit_event(group, e) for e in good[5:]),
            return_exceptions=True,
        )
        await first
    finally:
        await group.close()
        await db.close()
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 1 and isinstance(errors[0], psycopg.errors.NotNullViolation)
    assert isinstance(results[5], psycopg.errors.NotNullViolation)
    rows = _rows(fresh_db)
    assert sorted(int(str(row[3])) for row in rows) == [*range(10), 100]  # each good one once


async def test_two_roles_groups_on_the_same_streams_do_not_deadlock(fresh_db: str) -> None:
    db1, db2 = effects.Database(fresh_db, "t1", size=2), effects.Database(fresh_db, "t2", size=2)
    one, two = GroupCommit(db1), GroupCommit(db2)
    streams = [uuid.uuid4() for _ in range(30)]
    try:
        # The same streams, given to the two roles in opposite orders, many times over.
        for round_ in range(5):
            await asyncio.wait_for(
                asyncio.gather(
                    *(
                        effects.emit_event(one, _event(s, 1000 * round_ + i))
                        for i, s in enumerate(streams)
                    ),
                    *(
                        effects.emit_event(two, _event(s, 1000 * round_ + 500 + i))
                        for i, s in enumerate(reversed(streams))
                    ),
                ),
                timeout=30,
            )
    finally:
        for g in (one, two):
            await g.close()
        for d in (db1, db2):
            await d.close()
    rows = _rows(fresh_db)
    assert len(rows) == 5 * 2 * len(streams)
    with psycopg.connect(fresh_db) as conn:
        deadlocks = conn.execute(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    assert deadlocks is not None and deadlocks[0] == 0


async def test_handoffs_in_one_group_claim_each_job_once(fresh_db: str) -> None:
    db = effects.Database(fresh_db, "t", size=2)
    group = GroupCommit(db)
    initiated = [_initiated(uuid.uuid4()) for _ in range(20)]

    async def handoff(i: int) -> jobstore.Handoff:
        pending = pending_event_for(initiated[i])
        assert pending is not None
        pid = pending_event_id(initiated[i].id)
        plan = plan_emitted(pending, pid)
        return await jobstore.emit_pending_and_claim(
            group, pending, pid, plan, claimed_event(plan, "w")
        )

    try:
        first = await asyncio.gather(*(handoff(i) for i in range(20)))
        repeat = await asyncio.gather(*(handoff(i) for i in range(20)))
    finally:
        await group.close()
        await db.close()
    assert all(h.claimed_id is not None for h in first)
    # A repeat claims nothing new: the claim's key returns the first claim.
    assert [h.claimed_id for h in repeat] == [h.claimed_id for h in first]
    with psycopg.connect(fresh_db) as conn:
        counts = conn.execute(
            "SELECT event_type, count(*), count(DISTINCT xmin::text) FROM domain_events "
            "GROUP BY event_type ORDER BY event_type"
        ).fetchall()
    assert [(t, n) for t, n, _ in counts] == [
        ("workflow.queue.claimed", 20),
        ("workflow.queue.pending", 20),
    ]
    assert all(x <= 3 for _, _, x in counts), counts


async def test_a_stream_whose_lock_is_held_holds_up_no_other(fresh_db: str) -> None:
    """Another transaction holds one stream's lock (a long transaction in psql, a stuck
    activity): the statements of every other stream still commit, and that stream's
    commits once the lock is released."""
    db = effects.Database(fresh_db, "t", size=4)
    group = GroupCommit(db)
    stuck = uuid.uuid4()
    others = [uuid.uuid4() for _ in range(10)]
    holder = await psycopg.AsyncConnection.connect(fresh_db, autocommit=True)
    try:
        await holder.execute("BEGIN")
        await holder.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s::text, 0))", (stuck,)
        )
        waiting = asyncio.ensure_future(effects.emit_event(group, _event(stuck, 0)))
        await asyncio.sleep(0)
        # Given right behind it: alone, then in a group with it, both ways round.
        done = await asyncio.wait_for(
            asyncio.gather(
                *(effects.emit_event(group, _event(s, i + 1)) for i, s in enumerate(others))
            ),
            timeout=10,
        )
        mixed = asyncio.gather(
            effects.emit_event(group, _event(others[0], 100)),
            effects.emit_event(group, _event(stuck, 101)),
            effects.emit_event(group, _event(others[1], 102)),
        )
        await asyncio.sleep(1)
        assert len(done) == len(others) and not waiting.done()
        in_store = {row[3] for row in _rows(fresh_db)}
        assert {100, 102} <= in_store and not {0, 101} & in_store
        await holder.execute("COMMIT")
        await asyncio.wait_for(asyncio.gather(waiting, mixed), timeout=10)
    finally:
        await holder.close()
        await group.close()
        await db.close()
    rows = _rows(fresh_db)
    assert len(rows) == len(others) + 4
    stuck_rows = [int(str(row[3])) for row in rows if row[1] == stuck]
    assert sorted(stuck_rows) == [0, 101]


async def test_odd_payloads_and_a_key_given_twice_in_one_group(fresh_db: str) -> None:
    """In one group: a 1 MiB payload of mixed scripts and emoji, a deeply nested one, an
    empty one, and the same keyed event given twice. Each lands intact, once; both callers
    of the repeated key get the one id."""
    db = effects.Database(fresh_db, "t", size=2)
    group = GroupCommit(db)
    text = "ünïcødé ✓ 漢字 עברית 🚀 \\ \" ' \t" * (1024 * 1024 // 40)
    nested: dict[str, object] = {"leaf": "x"}
    for _ in range(200):
        nested = {"n": nested}
    stream = uuid.uuid4()
    huge = NewEvent(stream, "organization", "invitation.email.sent", {"t": text}, "odd:huge")
    deep = NewEvent(uuid.uuid4(), "organization", "invitation.email.sent", nested, "odd:deep")
    empty = NewEvent(uuid.uuid4(), "organization", "invitation.email.sent", {}, "odd:empty")
    twice = NewEvent(uuid.uuid4(), "organization", "invitation.email.sent", {"n": 1}, "odd:twice")
    try:
        first = asyncio.ensure_future(effects.emit_event(group, _event(uuid.uuid4(), 0)))
        await asyncio.sleep(0)
        ids = await asyncio.gather(
            *(effects.emit_event(group, e) for e in (huge, twice, deep, empty, twice))
        )
        await first
    finally:
        await group.close()
        await db.close()
    assert ids[1] == ids[4] and len(set(ids)) == 4
    with psycopg.connect(fresh_db) as conn:
        rows = dict(
            conn.execute(
                "SELECT idempotency_key, event_data FROM domain_events "
                "WHERE idempotency_key LIKE 'odd:%'"
            ).fetchall()
        )
        shared = conn.execute(
            "SELECT count(DISTINCT xmin::text) FROM domain_events "
            "WHERE idempotency_key LIKE 'odd:%'"
        ).fetchone()
    assert rows == {
        "odd:huge": {"t": text},
        "odd:deep": nested,
        "odd:empty": {},
        "odd:twice": {"n": 1},
    }
    assert shared == (1,)  # the four went in one transaction
