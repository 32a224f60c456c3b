"""The workflow queue projection's pure fold, and the checkpoint arithmetic."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from pipeline import events as ev
from pipeline.agents.checkpoints import Consumed, checkpoints_for
from pipeline.projections.event_row import position_of
from pipeline.projections.queue import QueueRow, fold, job_id_of
from replication.lsn import LSN, Position

ORG = uuid.uuid4()
JOB = uuid.uuid4()
WF = ev.workflow_id_for(str(ORG))
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def event(kind: str, n: int, **data: object) -> dict[str, object]:
    return {
        "id": uuid.uuid4(),
        "stream_id": ORG,
        "stream_type": "organization",
        "event_type": kind,
        "event_data": {"job_id": str(JOB), "workflow_id": WF, **data},
        "created_at": T0 + timedelta(seconds=n),
        "position": Position(LSN(0x1000 * n), 0),
    }


PENDING = event(
    ev.QUEUE_PENDING,
    1,
    workflow_type=ev.WORKFLOW_TYPE_BOOTSTRAP,
    source_event_id=str(JOB),
    input={"org_id": str(ORG), "name": "Acme"},
)
CLAIMED = event(ev.QUEUE_CLAIMED, 2, worker_id="w-1")
STARTED = event(ev.BOOTSTRAP_WORKFLOW_STARTED, 3, run_id="run-1")
COMPLETED = event(ev.QUEUE_COMPLETED, 4)
FAILED = event(ev.QUEUE_FAILED, 4, error="dns exploded")


def fold_all(*events: dict[str, object], row: QueueRow | None = None) -> QueueRow | None:
    for e in events:
        row = fold(row, e)
    return row


def test_pending_creates_a_pending_row() -> None:
    row = fold(None, PENDING)
    assert row is not None
    assert (row.job_id, row.stream_id, row.status) == (JOB, ORG, "pending")
    assert row.workflow_type == ev.WORKFLOW_TYPE_BOOTSTRAP
    assert row.workflow_id == WF
    assert row.event_type == ev.BOOTSTRAP_INITIATED  # the requesting event's type
    assert row.event_data == {"org_id": str(ORG), "name": "Acme"}
    assert row.created_at == row.updated_at == T0 + timedelta(seconds=1)
    assert row.position == Position(LSN(0x1000), 0)
    assert row.attempts == 0


def test_lifecycle_pending_processing_completed() -> None:
    claimed = fold_all(PENDING, CLAIMED)
    assert claimed is not None
    assert (claimed.status, claimed.worker_id, claimed.attempts) == ("processing", "w-1", 1)
    assert claimed.claimed_at == T0 + timedelta(seconds=2)
    started = fold(claimed, STARTED)
    assert started is not None
    assert (started.status, started.run_id) == ("processing", "run-1")
    assert started.started_at == T0 + timedelta(seconds=3)
    done = fold(started, COMPLETED)
    assert done is not None
    assert (done.status, done.completed_at) == ("completed", T0 + timedelta(seconds=4))
    assert done.created_at == T0 + timedelta(seconds=1)
    assert done.position == Position(LSN(0x4000), 0)


def test_failed_records_the_error() -> None:
    row = fold_all(PENDING, CLAIMED, STARTED, FAILED)
    assert row is not None
    assert (row.status, row.last_error, row.failed_at) == (
        "failed",
        "dns exploded",
        T0 + timedelta(seconds=4),
    )


def test_events_at_or_before_the_rows_position_change_nothing() -> None:
    row = fold_all(PENDING, CLAIMED, STARTED)
    for old in (PENDING, CLAIMED, STARTED):
        assert fold(row, old) is row  # redelivered or replayed: a no-op, same object


def test_redelivering_the_whole_history_is_a_no_op() -> None:
    once = fold_all(PENDING, CLAIMED, STARTED, COMPLETED)
    assert fold_all(PENDING, CLAIMED, STARTED, COMPLETED, row=once) is once


def test_terminal_status_is_kept_by_a_later_claim() -> None:
    late_claim = event(ev.QUEUE_CLAIMED, 5, worker_id="w-2")
    row = fold_all(PENDING, CLAIMED, COMPLETED, late_claim)
    assert row is not None
    assert row.status == "completed"
    assert row.attempts == 2


def test_a_job_first_seen_through_its_claim_is_still_projected() -> None:
    row = fold(None, CLAIMED)  # its pending event was dead-lettered, say
    assert row is not None
    assert (row.status, row.worker_id, row.workflow_id) == ("processing", "w-1", WF)


def test_other_events_and_other_jobs_are_ignored() -> None:
    row = fold(None, PENDING)
    initiated = {**event(ev.BOOTSTRAP_INITIATED, 9), "event_data": {"name": "x"}}
    assert fold(row, initiated) is row
    assert job_id_of(initiated) is None
    other = {**CLAIMED, "event_data": {"job_id": str(uuid.uuid4()), "worker_id": "w"}}
    assert fold(row, other) is row


def test_position_from_position_or_commit_lsn_and_idx() -> None:
    pos = Position(LSN.parse("16/B374D848"), 2)
    assert position_of({"position": pos}) == pos
    assert position_of({"position": "16/B374D848#2"}) == pos
    assert position_of({"commit_lsn": "16/B374D848", "idx": 2}) == pos
    assert position_of({"commit_lsn": pos.commit_lsn, "idx": 2}) == pos


def test_events_sharing_a_commit_lsn_are_ordered_by_idx() -> None:
    same_lsn = Position(LSN(0x9000), 0)
    first = {**PENDING, "position": same_lsn}
    second = {**CLAIMED, "position": Position(LSN(0x9000), 1)}
    row = fold_all(first, second)
    assert row is not None
    assert row.status == "processing"
    assert fold(row, first) is row


def test_checkpoints_take_the_next_offset_and_last_position_per_partition() -> None:
    p = [Position(LSN(0x100 * n), 0) for n in range(5)]
    batch = [
        Consumed("t", 0, 10, p[1]),
        Consumed("t", 1, 3, p[2]),
        Consumed("t", 0, 11, p[3]),
        Consumed("t", 0, 12, None),  # dead-lettered for bad headers: offset moves on
        Consumed("t", 2, 7, None),
    ]
    got = checkpoints_for(batch)
    assert [(c.partition, c.next_offset, c.position) for c in got] == [
        (0, 13, p[3]),
        (1, 4, p[2]),
    ]
