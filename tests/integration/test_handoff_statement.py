"""The handoff's one statement (pipeline.agents.jobstore.emit_pending_and_claim) on a real
PostgreSQL, checked with plain SQL: it appends exactly the events the two separate emits
did (pending, then its claim, consecutive stream versions, the same keys and causes), and
claims nothing for a job that has a history or a pending event of another id."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime

import psycopg
import pytest

from pipeline import events as ev
from pipeline.agents import effects, jobstore
from pipeline.agents.enqueue import pending_event_for, pending_event_id
from pipeline.agents.records import DomainEvent
from pipeline.agents.starter import claimed_event, plan_emitted, started_event
from pipeline.eventstore import emit_sync, idempotency_key
from replication.lsn import LSN, Position

pytestmark = pytest.mark.integration

WORKER = "worker-1"


def _initiated(org: uuid.UUID) -> DomainEvent:
    now = datetime.now(UTC)
    return DomainEvent(
        id=uuid.uuid4(),
        stream_id=org,
        stream_type="organization",
        stream_version=1,
        event_type=ev.BOOTSTRAP_INITIATED,
        event_data={
            "name": "Acme",
            "subdomain": "acme",
            "admins": [{"email": "a@example.com", "role": "owner"}],
        },
        event_metadata={},
        idempotency_key=None,
        created_at=now,
        position=Position(LSN(0x16B3748), 0),
        commit_ts=now,
        xid=1,
    )


def _stream(dsn: str, org: uuid.UUID) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT id, stream_version, event_type, event_data, event_metadata, idempotency_key "
            "FROM domain_events WHERE stream_id = %s ORDER BY stream_version",
            (org,),
        ).fetchall()


async def _handoff(
    db: effects.Database, initiated: DomainEvent, pending_id: uuid.UUID | None = None
) -> jobstore.Handoff:
    pending = pending_event_for(initiated)
    assert pending is not None
    pid = pending_id or pending_event_id(initiated.id)
    plan = plan_emitted(pending, pid)
    return await jobstore.emit_pending_and_claim(
        db, pending, pid, plan, claimed_event(plan, WORKER)
    )


async def test_the_statement_appends_what_the_two_emits_did(fresh_db: str) -> None:
    db = effects.Database(fresh_db, "t", size=2)
    # The old way, on one organization: the pending event, then its claim.
    old_org, new_org = uuid.uuid4(), uuid.uuid4()
    old = _initiated(old_org)
    pending = pending_event_for(old)
    assert pending is not None
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        old_pending_id = emit_sync(conn, pending)
        emit_sync(conn, claimed_event(plan_emitted(pending, old_pending_id), WORKER))
    # The new way, on another.
    new = _initiated(new_org)
    done = await _handoff(db, new)
    await db.close()

    assert done.pending_id == pending_event_id(new.id)
    assert done.history == frozenset() and done.claimed_id is not None
    old_rows, new_rows = _stream(fresh_db, old_org), _stream(fresh_db, new_org)
    assert (
        [r[1:3] for r in new_rows]
        == [r[1:3] for r in old_rows]
        == [
            (1, ev.QUEUE_PENDING),
            (2, ev.QUEUE_CLAIMED),
        ]
    )
    pending_row, claim_row = new_rows
    assert pending_row[0] == done.pending_id and claim_row[0] == done.claimed_id
    # The same data, metadata and keys, up to the ids.
    assert claim_row[5] == idempotency_key(done.pending_id, ev.QUEUE_CLAIMED)
    assert claim_row[4] == {"causation_id": str(done.pending_id), "source": "pipeline.starter"}
    assert old_rows[1][4] == {"causation_id": str(old_pending_id), "source": "pipeline.starter"}
    new_pending = pending_event_for(new)
    assert new_pending is not None
    assert pending_row[3] == new_pending.event_data
    assert pending_row[4] == new_pending.event_metadata
    assert pending_row[5] == new_pending.idempotency_key
    assert claim_row[3] == {
        "job_id": str(new.id),
        "workflow_id": ev.workflow_id_for(str(new_org)),
        "worker_id": WORKER,
    }
    old_claim_data = old_rows[1][3]
    assert isinstance(old_claim_data, dict)
    assert claim_row[3] == {
        **old_claim_data,
        "job_id": str(new.id),
        "workflow_id": ev.workflow_id_for(str(new_org)),
    }


async def test_a_repeat_appends_nothing_and_returns_the_same_ids(fresh_db: str) -> None:
    db = effects.Database(fresh_db, "t", size=2)
    org = uuid.uuid4()
    initiated = _initiated(org)
    first = await _handoff(db, initiated)
    again = await _handoff(db, initiated)
    await db.close()
    assert again == first
    assert len(_stream(fresh_db, org)) == 2


async def test_a_job_with_a_history_is_not_claimed(fresh_db: str) -> None:
    """The job's workflow_started is already in the store (written by hand before its
    pending event, an order no path produces): the pending event is appended, no claim."""
    db = effects.Database(fresh_db, "t", size=2)
    org = uuid.uuid4()
    initiated = _initiated(org)
    pending = pending_event_for(initiated)
    assert pending is not None
    plan = plan_emitted(pending, pending_event_id(initiated.id))
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        emit_sync(conn, started_event(plan, "run-1", uuid.uuid4()))
    done = await _handoff(db, initiated)
    await db.close()
    assert done.pending_id == pending_event_id(initiated.id)
    assert done.history == frozenset({ev.BOOTSTRAP_WORKFLOW_STARTED})
    assert done.claimed_id is None
    assert [r[2] for r in _stream(fresh_db, org)] == [
        ev.BOOTSTRAP_WORKFLOW_STARTED,
        ev.QUEUE_PENDING,
    ]


async def test_a_pending_event_of_an_earlier_id_is_not_claimed(fresh_db: str) -> None:
    """A job enqueued before the ids were derived keeps its random id; the statement
    returns it and claims nothing (the starter's own steps claim under that id)."""
    db = effects.Database(fresh_db, "t", size=2)
    org = uuid.uuid4()
    initiated = _initiated(org)
    pending = pending_event_for(initiated)
    assert pending is not None
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        earlier = emit_sync(conn, pending)
    done = await _handoff(db, initiated)
    await db.close()
    assert earlier != pending_event_id(initiated.id)
    assert done == jobstore.Handoff(earlier, frozenset(), None)
    assert [r[2] for r in _stream(fresh_db, org)] == [ev.QUEUE_PENDING]


# The longest name the contract allows, of text a JSON or SQL layer might mangle: quotes,
# a backslash, psycopg's placeholders, a line separator, right-to-left text, a family
# emoji of seven code points, astral characters.
ODD_NAME = ("Ünïcödé \"q\" 'a' \\ %s %(pending_id)s \u2028 مرحبا 👩‍👩‍👧‍👦 𝕏𐍈𠜎 " * 8)[:255]


async def test_odd_text_and_a_hundred_admins_reach_the_pending_event_intact(
    fresh_db: str,
) -> None:
    """An initiated event written with plain SQL, with the longest name the contract
    allows made of odd text and its most admins (100, with repeats): the pending event's
    input is the initiated event's data plus org_id, as PostgreSQL compares jsonb."""
    org = uuid.uuid4()
    admins = [
        {"email": f"ädmin+{i % 7}@exämple.com" if i % 2 else "dup@example.com", "role": "owner"}
        for i in range(100)
    ]
    data = {"name": ODD_NAME, "subdomain": f"odd-{org.hex[:8]}", "admins": admins}
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        made = conn.execute(
            "SELECT api.emit_domain_event("
            " p_stream_id => %s, p_stream_type => 'organization', p_event_type => %s,"
            ' p_event_data => %s::jsonb, p_event_metadata => \'{"source": "psql"}\')',
            (org, ev.BOOTSTRAP_INITIATED, json.dumps(data)),
        ).fetchone()
        assert made is not None
        row = conn.execute(
            "SELECT id, event_data FROM domain_events WHERE id = %s", (made[0],)
        ).fetchone()
    assert row is not None and row[1] == data
    initiated = replace(_initiated(org), id=row[0], event_data=row[1])
    db = effects.Database(fresh_db, "t", size=2)
    done = await _handoff(db, initiated)
    await db.close()
    assert done.claimed_id is not None
    with psycopg.connect(fresh_db) as conn:
        same = conn.execute(
            "SELECT (p.event_data->'input') - 'org_id' = i.event_data,"
            " p.event_data->'input'->>'org_id', jsonb_array_length(p.event_data->'input'->'admins')"
            " FROM domain_events p, domain_events i WHERE p.id = %s AND i.id = %s",
            (done.pending_id, initiated.id),
        ).fetchone()
    assert same == (True, str(org), 100)
    assert [r[2] for r in _stream(fresh_db, org)] == [
        ev.BOOTSTRAP_INITIATED,
        ev.QUEUE_PENDING,
        ev.QUEUE_CLAIMED,
    ]
