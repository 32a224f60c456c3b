"""The queue and invitation projections' batch statements against their pure twins.

A batch of status changes goes to PostgreSQL as one JSON parameter per round, the queue's
changed rows as one JSON parameter (``json_to_recordset``); these tests feed the tricky
cases (an invitation changed several times in one batch, statuses out of their natural
order, events at or before a row's position, unicode, NULLs, a megabyte of jsonb, a
number only the slower path can write, offsets other than UTC) and check that the rows
written are the rows the pure folds compute, and that a redelivered batch changes nothing.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from pipeline import events as ev
from pipeline.projections.invitations import apply_invitation_events, fold_invitations
from pipeline.projections.queue import QueueRow, _from_db, apply_queue_events, fold
from replication.lsn import LSN, Position

from .test_org_projections import invitation_rows

pytestmark = pytest.mark.integration

ORG = uuid.uuid4()
IST = timezone(timedelta(hours=5, minutes=30))
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=IST)


def event(kind: str, data: dict[str, object], n: int, idx: int = 0) -> dict[str, object]:
    """An event row as the projection agent hands it over, at position n (and idx)."""
    at = T0 + timedelta(seconds=n, microseconds=0 if n % 2 else 123_456)
    return {
        "id": uuid.uuid4(),
        "stream_id": ORG,
        "stream_type": "organization",
        "event_type": kind,
        "event_data": data,
        "event_metadata": {"source": "test"},
        "created_at": at if n % 3 else at.isoformat(),  # typed or as its JSON text
        "position": Position(LSN(0x2_0000_0000 + 0x100 * n), idx),
    }


async def apply(dsn: str, applier: object, events: list[dict[str, object]]) -> int:
    async with await psycopg.AsyncConnection.connect(dsn) as conn, conn.transaction():
        return int(await applier(conn, events))  # type: ignore[operator]


async def test_invitation_status_rounds_write_what_the_fold_computes(fresh_db: str) -> None:
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()

    def invited(inv: uuid.UUID, email: str, n: int) -> dict[str, object]:
        data = {
            "invitation_id": str(inv),
            "email": email,
            "role": "administrätor ✓",
            "token_hash": None if inv == c else "ab" * 32,
            "expires_at": (T0 + timedelta(days=7)).isoformat(),
        }
        return event(ev.USER_INVITED, data, n)

    def status(kind: str, inv: uuid.UUID, n: int, idx: int = 0) -> dict[str, object]:
        return event(kind, {"invitation_id": str(inv), "email": "x@example.org"}, n, idx)

    first = [
        invited(a, "zoë@exämple.org", 1),
        invited(b, "b@example.org", 1),
        invited(c, "c@example.org", 2),
    ]
    # One batch: a is sent, accepted, sent again (accepted outlives sent); b is revoked
    # then sent (revoked is final); c is sent, then an event older than c's row arrives;
    # a status for an invitation nobody created; two changes at one LSN told apart by idx.
    second = [
        status(ev.INVITATION_EMAIL_SENT, a, 3),
        status(ev.INVITATION_REVOKED, b, 3, 1),
        status(ev.INVITATION_ACCEPTED, a, 4),
        status(ev.INVITATION_EMAIL_SENT, c, 5),
        status(ev.INVITATION_EMAIL_SENT, b, 6),
        status(ev.INVITATION_EMAIL_SENT, a, 6, 1),
        status(ev.INVITATION_REVOKED, c, 2),
        status(ev.INVITATION_EMAIL_SENT, uuid.uuid4(), 7),
    ]
    assert await apply(fresh_db, apply_invitation_events, first) == 3
    changed = await apply(fresh_db, apply_invitation_events, second)
    expected = fold_invitations(first + second)
    assert invitation_rows(fresh_db) == expected
    assert {row.status for row in expected.values()} == {"accepted", "revoked", "sent"}
    assert changed == 6  # every status change moves updated_at, even when it keeps the status
    # Redelivered: nothing changes.
    assert await apply(fresh_db, apply_invitation_events, second) == 0
    assert invitation_rows(fresh_db) == expected


def queue_rows(dsn: str) -> dict[uuid.UUID, QueueRow]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT job_id, stream_id, stream_type, event_type, event_data, status, "
            "workflow_type, workflow_id, run_id, worker_id, attempts, last_error, created_at, "
            "claimed_at, started_at, completed_at, failed_at, updated_at, "
            "last_commit_lsn::text, last_idx FROM workflow_queue_projection"
        ).fetchall()
    return {row.job_id: row for row in map(_from_db, rows)}


def folded(events: list[dict[str, object]]) -> dict[uuid.UUID, QueueRow]:
    """The pure fold, each job's events in position order (as the applier takes them)."""
    rows: dict[uuid.UUID, QueueRow] = {}
    for e in sorted(events, key=lambda e: e["position"]):  # type: ignore[arg-type,return-value]
        job = uuid.UUID(str(e["event_data"]["job_id"]))  # type: ignore[index]
        new = fold(rows.get(job), e)
        if new is not None:
            rows[job] = new
    return rows


@pytest.mark.parametrize("writer", ["json", "fallback"])
async def test_queue_upserts_write_what_the_fold_computes(fresh_db: str, writer: str) -> None:
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    wf = ev.workflow_id_for(str(ORG))
    huge = {
        "name": "Ünïcödé 🎉 \\ \" '",
        "subdomain": "acme",
        "note": None,
        "nested": [{"deep": [1, 2.5, True, None, {"k": "v"}]}] * 3,
        "blob": "é" * 600_000,  # a megabyte of jsonb
    }
    if writer == "fallback":
        huge["serial"] = 2**70  # past 64 bits: orjson cannot write it, the row-by-row path does
    pending = {
        "job_id": str(a),
        "workflow_type": ev.WORKFLOW_TYPE_BOOTSTRAP,
        "workflow_id": wf,
        "source_event_id": str(a),
        "input": huge,
    }
    batch = [
        # a: completed listed before its claim (folded in position order), two at one LSN.
        event(ev.QUEUE_PENDING, pending, 1),
        event(ev.QUEUE_COMPLETED, {"job_id": str(a), "workflow_id": wf}, 4),
        event(ev.QUEUE_CLAIMED, {"job_id": str(a), "workflow_id": wf, "worker_id": "w-ü"}, 2),
        event(ev.BOOTSTRAP_WORKFLOW_STARTED, {"job_id": str(a), "run_id": "r-1"}, 2, 1),
        # b: known only from its failure (NULL workflow type, run, worker), no error text.
        event(ev.QUEUE_FAILED, {"job_id": str(b)}, 3),
        # c: claimed twice (attempts), then started.
        event(ev.QUEUE_CLAIMED, {"job_id": str(c), "worker_id": "w-1"}, 5),
        event(ev.QUEUE_CLAIMED, {"job_id": str(c), "worker_id": "w-2"}, 6),
        event(ev.BOOTSTRAP_WORKFLOW_STARTED, {"job_id": str(c), "run_id": "r-c"}, 7),
    ]
    assert await apply(fresh_db, apply_queue_events, batch) == len(batch)
    expected = folded(batch)
    assert queue_rows(fresh_db) == expected
    assert expected[a].status == "completed" and expected[a].event_data == huge
    assert expected[b].last_error == "unknown" and expected[b].workflow_type is None
    assert expected[c].attempts == 2
    # Redelivered, and one older event of a row already past it: nothing changes.
    assert await apply(fresh_db, apply_queue_events, [*batch, batch[2]]) == 0
    assert queue_rows(fresh_db) == expected
    # A later batch on top of the stored rows.
    later = [event(ev.QUEUE_FAILED, {"job_id": str(c), "error": "ünicode ✗"}, 8)]
    assert await apply(fresh_db, apply_queue_events, later) == 1
    assert queue_rows(fresh_db) == folded(batch + later)
