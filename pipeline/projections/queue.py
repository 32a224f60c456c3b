"""The workflow queue projection: a fold of the ``workflow.queue.*`` events.

``workflow_queue_projection`` has one row per job (job_id = id of the request event).
Lifecycle: ``pending`` (workflow.queue.pending) → ``processing`` (workflow.queue.claimed;
organization.bootstrap.workflow_started adds the run id) → ``completed`` | ``failed``.

:func:`fold` is pure. :func:`apply_queue_events` reads the rows a batch touches, folds the
batch into them and writes them back with the position guard in SQL: a row keeps the
position (commit_lsn, idx) of the last event folded into it and an event at or before
that position changes nothing (DESIGN.md invariant 3), so redelivery and replay are no-ops.
Every timestamp comes from the events, never from the clock, so a rebuild gives the
same rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final

import orjson
import psycopg
from psycopg.rows import TupleRow
from psycopg.types.json import Jsonb

from pipeline import events as ev
from pipeline import jsontext
from pipeline.projections.event_row import EventRow, position_of
from replication.lsn import LSN, Position

QUEUE_EVENT_TYPES: Final = frozenset(
    {
        ev.QUEUE_PENDING,
        ev.QUEUE_CLAIMED,
        ev.BOOTSTRAP_WORKFLOW_STARTED,
        ev.QUEUE_COMPLETED,
        ev.QUEUE_FAILED,
    }
)
TERMINAL: Final = frozenset({"completed", "failed"})
# The type of the event whose id is a job's id, by workflow type: the column
# ``event_type`` is "the requesting event's type".
REQUESTING_EVENT_TYPE: Final = {ev.WORKFLOW_TYPE_BOOTSTRAP: ev.BOOTSTRAP_INITIATED}


@dataclass(frozen=True, slots=True)
class QueueRow:
    """One row of ``workflow_queue_projection``."""

    job_id: uuid.UUID
    stream_id: uuid.UUID
    stream_type: str
    event_type: str
    event_data: dict[str, object]
    status: str
    workflow_type: str | None
    workflow_id: str | None
    run_id: str | None
    worker_id: str | None
    attempts: int
    last_error: str | None
    created_at: datetime
    claimed_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    failed_at: datetime | None
    updated_at: datetime
    position: Position


def _uuid(value: object) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _time(value: object) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def _text(data: Mapping[str, object], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None


def _data(event: EventRow) -> Mapping[str, object]:
    data = event.get("event_data")
    # A dict first: isinstance against the Mapping ABC is the slow check.
    return data if type(data) is dict or isinstance(data, Mapping) else {}


def job_id_of(event: EventRow) -> uuid.UUID | None:
    """The job an event is about, or None if it is not a queue event."""
    if event.get("event_type") not in QUEUE_EVENT_TYPES:
        return None
    job_id = _data(event).get("job_id")
    try:
        return _uuid(job_id) if job_id is not None else None
    except ValueError:
        return None


def _new_row(job_id: uuid.UUID, event: EventRow, at: datetime, pos: Position) -> QueueRow:
    # A row is normally created by workflow.queue.pending; any later event of a job whose
    # pending event was never folded (a dead-lettered record, a partial replay) creates it
    # too, so the projection still shows what is known about the job.
    return QueueRow(
        job_id=job_id,
        stream_id=_uuid(event["stream_id"]),
        stream_type=str(event["stream_type"]),
        event_type=ev.BOOTSTRAP_INITIATED,
        event_data={},
        status="pending",
        workflow_type=None,
        workflow_id=None,
        run_id=None,
        worker_id=None,
        attempts=0,
        last_error=None,
        created_at=at,
        claimed_at=None,
        started_at=None,
        completed_at=None,
        failed_at=None,
        updated_at=at,
        position=pos,
    )


def fold(row: QueueRow | None, event: EventRow) -> QueueRow | None:
    """The row after event; the same row when event is at or before its position."""
    job_id = job_id_of(event)
    if job_id is None or (row is not None and row.job_id != job_id):
        return row
    pos = position_of(event)
    if row is not None and pos <= row.position:
        return row
    at = _time(event["created_at"])
    data = _data(event)
    current = row if row is not None else _new_row(job_id, event, at, pos)
    # One replace per event: what every event changes, then what its type adds.
    changes: dict[str, Any] = {
        "position": pos,
        "updated_at": at,
        "workflow_id": _text(data, "workflow_id") or current.workflow_id,
    }
    kind = event["event_type"]
    active = current.status not in TERMINAL
    if kind == ev.QUEUE_PENDING:
        workflow_type = _text(data, "workflow_type")
        raw_input = data.get("input")
        changes["workflow_type"] = workflow_type
        changes["event_type"] = REQUESTING_EVENT_TYPE.get(workflow_type or "", current.event_type)
        changes["event_data"] = dict(raw_input) if isinstance(raw_input, Mapping) else {}
    elif kind == ev.QUEUE_CLAIMED:
        changes["status"] = "processing" if active else current.status
        changes["worker_id"] = _text(data, "worker_id")
        changes["claimed_at"] = at
        changes["attempts"] = current.attempts + 1
    elif kind == ev.BOOTSTRAP_WORKFLOW_STARTED:
        changes["status"] = "processing" if active else current.status
        changes["run_id"] = _text(data, "run_id")
        changes["started_at"] = at
    elif kind == ev.QUEUE_COMPLETED:
        changes["status"] = "completed"
        changes["completed_at"] = at
    else:  # workflow.queue.failed, the only queue event type left.
        changes["status"] = "failed"
        changes["failed_at"] = at
        changes["last_error"] = _text(data, "error") or "unknown"
    return replace(current, **changes)


_COLUMNS: Final = (
    "job_id, stream_id, stream_type, event_type, event_data, status, workflow_type, "
    "workflow_id, run_id, worker_id, attempts, last_error, created_at, claimed_at, "
    "started_at, completed_at, failed_at, updated_at, last_commit_lsn, last_idx"
)
_SELECT: Final = (
    f"SELECT {_COLUMNS.replace('last_commit_lsn', 'last_commit_lsn::text')} "
    "FROM workflow_queue_projection WHERE job_id = ANY(%s::uuid[]) ORDER BY job_id FOR UPDATE"
)
_UPDATED = ", ".join(
    f"{c} = EXCLUDED.{c}" for c in _COLUMNS.split(", ") if c not in {"job_id", "created_at"}
)
_GUARD: Final = (
    "WHERE (workflow_queue_projection.last_commit_lsn, workflow_queue_projection.last_idx) "
)
_UPSERT: Final = (
    f"INSERT INTO workflow_queue_projection ({_COLUMNS}) VALUES "
    "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::pg_lsn, %s) "
    f"ON CONFLICT (job_id) DO UPDATE SET {_UPDATED} {_GUARD}< (%s::pg_lsn, %s)"
)
# The same upsert for every changed row at once, the rows one JSON parameter
# (:func:`rows_json`) unpacked by the server, each row still guarded by its own position.
_UPSERT_JSON: Final = (
    f"INSERT INTO workflow_queue_projection ({_COLUMNS}) SELECT {_COLUMNS} "
    "FROM json_to_recordset(%s::json) AS r(job_id uuid, stream_id uuid, stream_type text, "
    "event_type text, event_data jsonb, status text, workflow_type text, workflow_id text, "
    "run_id text, worker_id text, attempts integer, last_error text, created_at timestamptz, "
    "claimed_at timestamptz, started_at timestamptz, completed_at timestamptz, "
    "failed_at timestamptz, updated_at timestamptz, last_commit_lsn pg_lsn, last_idx integer) "
    f"ON CONFLICT (job_id) DO UPDATE SET {_UPDATED} "
    f"{_GUARD}< (EXCLUDED.last_commit_lsn, EXCLUDED.last_idx)"
)


def _uuid_array(ids: Iterable[uuid.UUID]) -> str:
    """Ids as the text of a uuid[] (one parameter, not a list dumped element by element)."""
    return "{" + ",".join(map(str, ids)) + "}"


def _from_db(r: Sequence[object]) -> QueueRow:
    data = r[4]
    return QueueRow(
        job_id=_uuid(r[0]),
        stream_id=_uuid(r[1]),
        stream_type=str(r[2]),
        event_type=str(r[3]),
        event_data=dict(data) if isinstance(data, Mapping) else {},
        status=str(r[5]),
        workflow_type=r[6] if isinstance(r[6], str) else None,
        workflow_id=r[7] if isinstance(r[7], str) else None,
        run_id=r[8] if isinstance(r[8], str) else None,
        worker_id=r[9] if isinstance(r[9], str) else None,
        attempts=int(str(r[10])),
        last_error=r[11] if isinstance(r[11], str) else None,
        created_at=_time(r[12]),
        claimed_at=_time(r[13]) if r[13] is not None else None,
        started_at=_time(r[14]) if r[14] is not None else None,
        completed_at=_time(r[15]) if r[15] is not None else None,
        failed_at=_time(r[16]) if r[16] is not None else None,
        updated_at=_time(r[17]),
        position=Position(LSN.parse(str(r[18])), int(str(r[19]))),
    )


def _params(row: QueueRow) -> tuple[object, ...]:
    lsn = str(row.position.commit_lsn)
    return (
        row.job_id,
        row.stream_id,
        row.stream_type,
        row.event_type,
        Jsonb(row.event_data, dumps=jsontext.dumps),
        row.status,
        row.workflow_type,
        row.workflow_id,
        row.run_id,
        row.worker_id,
        row.attempts,
        row.last_error,
        row.created_at,
        row.claimed_at,
        row.started_at,
        row.completed_at,
        row.failed_at,
        row.updated_at,
        lsn,
        row.position.idx,
        lsn,
        row.position.idx,
    )


def rows_json(rows: Sequence[QueueRow]) -> bytes:
    """Rows as the JSON parameter of the one-statement upsert, a Decimal in event_data as
    its digits; raises ``TypeError`` (or orjson's error, a ``TypeError``) for event_data
    orjson cannot write (an integer past 64 bits, nesting past 255 levels): the caller
    then sends them one by one (:func:`pipeline.jsontext.dumps`)."""
    return orjson.dumps(
        [
            {
                "job_id": row.job_id,
                "stream_id": row.stream_id,
                "stream_type": row.stream_type,
                "event_type": row.event_type,
                "event_data": row.event_data,
                "status": row.status,
                "workflow_type": row.workflow_type,
                "workflow_id": row.workflow_id,
                "run_id": row.run_id,
                "worker_id": row.worker_id,
                "attempts": row.attempts,
                "last_error": row.last_error,
                "created_at": row.created_at,
                "claimed_at": row.claimed_at,
                "started_at": row.started_at,
                "completed_at": row.completed_at,
                "failed_at": row.failed_at,
                "updated_at": row.updated_at,
                "last_commit_lsn": str(row.position.commit_lsn),
                "last_idx": row.position.idx,
            }
            for row in rows
        ],
        default=jsontext.fragment,
    )


async def apply_queue_events(
    conn: psycopg.AsyncConnection[TupleRow], events: list[dict[str, object]]
) -> int:
    """Fold events into ``workflow_queue_projection``; returns how many changed a row.

    Runs inside the caller's transaction (the projection agent commits the batch and its
    checkpoint together). Rows are locked in job_id order, so two writers of overlapping
    batches (a replay beside the live agent) cannot deadlock. The changed rows go back in
    one statement, as one JSON parameter (:func:`rows_json`), or row by row when orjson
    cannot write one of them.
    """
    by_job: dict[uuid.UUID, list[dict[str, object]]] = {}
    for event in events:
        job_id = job_id_of(event)
        if job_id is not None:
            by_job.setdefault(job_id, []).append(event)
    if not by_job:
        return 0
    jobs = sorted(by_job)
    cur = await conn.execute(_SELECT, (_uuid_array(jobs),))
    stored = {row.job_id: row for row in map(_from_db, await cur.fetchall())}
    applied = 0
    changed: list[QueueRow] = []
    for job_id in jobs:
        before = stored.get(job_id)
        row = before
        for event in sorted(by_job[job_id], key=position_of):
            after = fold(row, event)
            if after is not row:
                applied += 1
            row = after
        if row is not None and row is not before:
            changed.append(row)
    if changed:
        try:
            param = rows_json(changed).decode()
        except TypeError:
            param = None
        async with conn.cursor() as wcur:
            if param is not None:
                await wcur.execute(_UPSERT_JSON, (param,))
            else:
                await wcur.executemany(_UPSERT, [_params(row) for row in changed])
    return applied
