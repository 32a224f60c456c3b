"""The starter's statements on the event store: a job's history, the run id its events
carry, and the handoff's one statement (pending event, history read and claim).

Thin I/O, like :mod:`pipeline.agents.effects` (whose :class:`~pipeline.agents.effects.
Database` lends the connections); the decisions are in :mod:`pipeline.agents.starter`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Final, Protocol

from pipeline import metrics
from pipeline.agents.effects import Database, Statements
from pipeline.agents.starter import JOB_DONE, STARTED_OR_DONE, StartPlan
from pipeline.eventstore import NewEvent, json_param

# The events of a job's history (see job_history); named parameters stream_id, types,
# job_id, workflow_id.
_HISTORY_OF_JOB: Final = (
    "FROM domain_events WHERE stream_id = %(stream_id)s AND event_type = ANY(%(types)s) "
    "AND (event_data->>'job_id' = %(job_id)s "
    "     OR (event_data->>'job_id' IS NULL AND event_data->>'workflow_id' = %(workflow_id)s))"
)
_HISTORY: Final = "SELECT DISTINCT event_type " + _HISTORY_OF_JOB


class Job(Protocol):
    """What names a job in the store (a :class:`StartPlan`, an ``Unstartable``)."""

    @property
    def stream_id(self) -> uuid.UUID: ...
    @property
    def job_id(self) -> str: ...
    @property
    def workflow_id(self) -> str: ...


def _history_params(plan: Job) -> dict[str, object]:
    return {
        "stream_id": plan.stream_id,
        "types": sorted(STARTED_OR_DONE),
        "job_id": plan.job_id,
        "workflow_id": plan.workflow_id,
    }


async def job_history(db: Database, plan: Job) -> frozenset[str]:
    """The types of the events in the store showing plan's job was started or finished.

    Read from the event store itself, not the projection, so it is right even while the
    projection agent lags behind. The bootstrap's own completed/failed events name only
    the workflow (one per organization), hence the workflow_id branch.
    """
    async with db.borrow() as conn:
        cur = await conn.execute(_HISTORY, _history_params(plan))
        return frozenset(str(row[0]) for row in await cur.fetchall())


# The handoff's one statement (one round trip, one commit): the pending event under the
# id the caller chose, the job's history, and the claim when the pending event is the one
# of that id and the history is empty (the job was never started: decide() would START).
# The claim's emit sees the pending event (a plpgsql function's statements see what the
# transaction wrote before them), so it takes the next stream version.
_HANDOFF: Final = (
    "WITH pending AS (SELECT api.emit_domain_event("
    "  p_event_id => %(pending_id)s, p_event_type => %(pending_type)s,"
    "  p_aggregate_type => %(stream_type)s, p_aggregate_id => %(stream_id)s,"
    "  p_event_data => %(pending_data)s, p_event_metadata => %(pending_metadata)s,"
    "  p_idempotency_key => %(pending_key)s) AS id),"
    " history AS (SELECT coalesce(array_agg(DISTINCT event_type), '{}'::text[]) AS types "
    + _HISTORY_OF_JOB
    + ") SELECT pending.id, history.types,"
    " CASE WHEN pending.id = %(pending_id)s AND cardinality(history.types) = 0"
    "  THEN api.emit_domain_event("
    "   p_stream_id => %(stream_id)s, p_stream_type => %(stream_type)s,"
    "   p_event_type => %(claim_type)s, p_event_data => %(claim_data)s,"
    "   p_event_metadata => %(claim_metadata)s, p_idempotency_key => %(claim_key)s)"
    " END FROM pending, history"
)


@dataclass(frozen=True, slots=True)
class Handoff:
    """What the handoff's statement did: the pending event's id (the first one's on a
    repeat), the job's history, and the claim's id if it claimed the job."""

    pending_id: uuid.UUID
    history: frozenset[str]
    claimed_id: uuid.UUID | None


async def emit_pending_and_claim(
    db: Statements,
    pending: NewEvent,
    pending_id: uuid.UUID,
    plan: StartPlan,
    claimed: NewEvent,
) -> Handoff:
    """Append pending under pending_id and, in the same statement, claim its job if it
    has no history (see _HANDOFF). plan and claimed are the plan and claim of the pending
    event of that id; on a repeat that returns another id, nothing is claimed. Safe to
    run twice (the handlers' group commit may): a repeat appends nothing."""
    if pending.stream_id != plan.stream_id or claimed.stream_id != plan.stream_id:
        raise ValueError("pending, plan and claim must be of one stream")
    params = {
        **_history_params(plan),
        "pending_id": pending_id,
        "pending_type": pending.event_type,
        "stream_type": pending.stream_type,
        "pending_data": json_param(pending.event_data),
        "pending_metadata": json_param(pending.event_metadata),
        "pending_key": pending.idempotency_key,
        "claim_type": claimed.event_type,
        "claim_data": json_param(claimed.event_data),
        "claim_metadata": json_param(claimed.event_metadata),
        "claim_key": claimed.idempotency_key,
    }
    row = await db.fetchone(_HANDOFF, params, stream=plan.stream_id)
    if row is None or not isinstance(row[0], uuid.UUID):
        raise RuntimeError("the handoff's statement returned no pending id")
    metrics.EVENTS_EMITTED.labels(pending.event_type).inc()
    claimed_id = row[2] if isinstance(row[2], uuid.UUID) else None
    types = row[1] if isinstance(row[1], list) else ()
    if claimed_id is not None:
        metrics.EVENTS_EMITTED.labels(claimed.event_type).inc()
    return Handoff(row[0], frozenset(str(t) for t in types), claimed_id)


_RECORDED_RUN_ID: Final = (
    "SELECT event_metadata->>'run_id' FROM domain_events "
    "WHERE stream_id = %s AND event_type = ANY(%s) AND event_data->>'job_id' = %s "
    "AND event_metadata ? 'run_id' ORDER BY stream_version LIMIT 1"
)


async def recorded_run_id(db: Database, plan: StartPlan) -> str | None:
    """The run id the workflow's events of plan's job carry (its activities record it)."""
    async with db.borrow() as conn:
        cur = await conn.execute(_RECORDED_RUN_ID, (plan.stream_id, sorted(JOB_DONE), plan.job_id))
        row = await cur.fetchone()
    return str(row[0]) if row is not None and row[0] else None
