"""The starter's decisions: claim a pending job, start its workflow once, record the start.

Pure: what to emit, whether to start, how long to wait before the next attempt. The I/O
(event store, Temporal) is in :mod:`pipeline.agents.effects`.

A job is started at most once even long after Temporal has forgotten the execution:
before starting, the starter reads the job's history in the event store and does not
start a job that already has a ``workflow_started``, ``completed`` or ``failed`` event
(Temporal's id reuse policy alone only protects within its retention period).

``workflow_started`` is recorded once for every started workflow (DESIGN.md invariant 9):
by the workflow's first step, and by the starter after the start returned, both under
:func:`pipeline.events.workflow_started_key`, so the second adds nothing. A job whose
history shows it finished but holds no ``workflow_started`` (a workflow of an earlier
version, which did not record it, finished while the pipeline was down between the
start and its record) gets it recorded with the run id Temporal reports.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import Enum
from typing import Final

from pipeline import events as ev
from pipeline.agents.errors import RecordRejected
from pipeline.agents.records import DomainEvent
from pipeline.bootstrap.inputs import Admin, BootstrapInput
from pipeline.eventstore import NewEvent, idempotency_key

SOURCE: Final = "pipeline.starter"

# The job's own outcome (these name the job); with no workflow_started beside them, the
# start was never recorded.
JOB_DONE: Final = frozenset({ev.QUEUE_COMPLETED, ev.QUEUE_FAILED})
# Event types that prove a job's workflow was started (or already finished).
STARTED_OR_DONE: Final = frozenset(
    {
        ev.BOOTSTRAP_WORKFLOW_STARTED,
        ev.QUEUE_COMPLETED,
        ev.QUEUE_FAILED,
        ev.BOOTSTRAP_COMPLETED,
        ev.BOOTSTRAP_FAILED,
    }
)


@dataclass(frozen=True, slots=True)
class StartPlan:
    """What a ``workflow.queue.pending`` event asks the starter to do."""

    pending_event_id: uuid.UUID
    stream_id: uuid.UUID
    stream_type: str
    job_id: str
    workflow_type: str
    workflow_id: str
    workflow_input: BootstrapInput


class Decision(Enum):
    """Whether to start a job's workflow."""

    START = "start"
    SKIP_ALREADY_STARTED = "skip_already_started"
    # Finished without a record of its start: record it (the run id from Temporal).
    RECORD_START = "record_start"


def plan_start(event: DomainEvent) -> StartPlan | None:
    """The plan for a pending event, None for any other event type."""
    if event.event_type != ev.QUEUE_PENDING:
        return None
    return _plan(event.id, event.stream_id, event.stream_type, event.event_data)


def plan_emitted(pending: NewEvent, pending_event_id: uuid.UUID) -> StartPlan:
    """The plan for a pending event the enqueue agent has just appended (the handoff).

    The same plan :func:`plan_start` makes of that event once Kafka delivers it: the id
    is the one the event store returned (the first event's, on a repeat), so both paths
    emit the claim and the start under the same idempotency keys.
    """
    if pending.event_type != ev.QUEUE_PENDING:
        raise ValueError(f"not a pending event: {pending.event_type}")
    return _plan(pending_event_id, pending.stream_id, pending.stream_type, pending.event_data)


def _plan(
    pending_event_id: uuid.UUID,
    stream_id: uuid.UUID,
    stream_type: str,
    data: Mapping[str, object],
) -> StartPlan:
    raw_input = data.get("input")
    job_id = data.get("job_id")
    workflow_type = data.get("workflow_type")
    if not isinstance(raw_input, dict) or not isinstance(job_id, str):
        raise RecordRejected("bad_pending", "workflow.queue.pending without input or job_id")
    if workflow_type != ev.WORKFLOW_TYPE_BOOTSTRAP:
        raise RecordRejected("bad_pending", f"unknown workflow_type {workflow_type!r}")
    return StartPlan(
        pending_event_id=pending_event_id,
        stream_id=stream_id,
        stream_type=stream_type,
        job_id=job_id,
        workflow_type=workflow_type,
        # Always the deterministic id, whatever a producer wrote (records.py checks they agree).
        workflow_id=ev.workflow_id_for(str(stream_id)),
        # The workflow records workflow_started under the key the starter uses.
        workflow_input=bootstrap_input(raw_input, job_id, str(pending_event_id)),
    )


def bootstrap_input(
    raw: Mapping[str, object], job_id: str, pending_event_id: str
) -> BootstrapInput:
    """The pending event's ``input`` as the workflow will decode it.

    Temporal's data converter reads the start argument into :class:`BootstrapInput`,
    ignoring unknown keys and failing the workflow task on a missing or mistyped field; the
    same reading here turns such an input into a dead letter instead of a workflow that
    cannot begin. What the values mean (a valid subdomain, admins) the workflow's first
    activity validates, and a bad value is a business failure it records.
    """
    raw_admins = raw.get("admins")
    if not isinstance(raw_admins, list):
        raise RecordRejected("bad_pending", "input.admins is not a list")
    admins = []
    for i, admin in enumerate(raw_admins):
        if not isinstance(admin, dict):
            raise RecordRejected("bad_pending", f"input.admins[{i}] is not an object")
        admins.append(
            Admin(email=_text(admin, f"admins[{i}].email"), role=_text(admin, f"admins[{i}].role"))
        )
    return BootstrapInput(
        org_id=_text(raw, "org_id"),
        job_id=job_id,
        name=_text(raw, "name"),
        subdomain=_text(raw, "subdomain"),
        admins=admins,
        pending_event_id=pending_event_id,
    )


def _text(raw: Mapping[str, object], path: str) -> str:
    value = raw.get(path.rsplit(".", 1)[-1])
    if not isinstance(value, str):
        raise RecordRejected("bad_pending", f"input.{path} is not a string")
    return value


def decide(history: Iterable[str]) -> Decision:
    """Start unless the job's history (its event types) shows it was already started;
    record the start of a job that finished without a record of it."""
    seen = frozenset(history)
    if ev.BOOTSTRAP_WORKFLOW_STARTED in seen:
        return Decision.SKIP_ALREADY_STARTED
    if JOB_DONE & seen:
        return Decision.RECORD_START
    if STARTED_OR_DONE & seen:
        # Only the workflow's own outcome, which names the organization, not the job:
        # another job of the same organization ran the (one) workflow.
        return Decision.SKIP_ALREADY_STARTED
    return Decision.START


def with_claim(plan: StartPlan, claimed_id: uuid.UUID) -> StartPlan:
    """plan with the claim's id in the workflow input (the workflow's start record's cause)."""
    return replace(
        plan, workflow_input=replace(plan.workflow_input, claimed_event_id=str(claimed_id))
    )


# workflow.queue.failed's error is at most this long (the contract's maxLength).
_MAX_ERROR = 4000


@dataclass(frozen=True, slots=True)
class Unstartable:
    """A pending job whose input the workflow cannot take (:func:`bootstrap_input`), and
    the ``workflow.queue.failed`` that says so; the job's keys for reading its history."""

    stream_id: uuid.UUID
    job_id: str
    workflow_id: str
    failed: NewEvent


def unstartable(event: DomainEvent, rejection: RecordRejected) -> Unstartable | None:
    """What to record for a pending event :func:`plan_start` rejected: its job failed,
    with the reason, keyed by the pending event (recorded once). None when the event names
    no job (the contract requires one; without the contract there is nothing to fail)."""
    job_id = event.event_data.get("job_id")
    if not isinstance(job_id, str) or not job_id:
        return None
    workflow_id = ev.workflow_id_for(str(event.stream_id))
    error = f"{rejection.kind}: {rejection.detail}"[:_MAX_ERROR]
    return Unstartable(
        stream_id=event.stream_id,
        job_id=job_id,
        workflow_id=workflow_id,
        failed=NewEvent(
            stream_id=event.stream_id,
            stream_type=event.stream_type,
            event_type=ev.QUEUE_FAILED,
            event_data={"job_id": job_id, "workflow_id": workflow_id, "error": error},
            idempotency_key=idempotency_key(event.id, ev.QUEUE_FAILED),
            event_metadata={"causation_id": str(event.id), "source": SOURCE},
        ),
    )


def claimed_event(plan: StartPlan, worker_id: str) -> NewEvent:
    """``workflow.queue.claimed`` for plan; keyed by the pending event, so emitted once."""
    return NewEvent(
        stream_id=plan.stream_id,
        stream_type=plan.stream_type,
        event_type=ev.QUEUE_CLAIMED,
        event_data={"job_id": plan.job_id, "workflow_id": plan.workflow_id, "worker_id": worker_id},
        idempotency_key=idempotency_key(plan.pending_event_id, ev.QUEUE_CLAIMED),
        event_metadata={"causation_id": str(plan.pending_event_id), "source": SOURCE},
    )


def started_event(plan: StartPlan, run_id: str, claimed_id: uuid.UUID) -> NewEvent:
    """``organization.bootstrap.workflow_started``, caused by the claim, emitted once."""
    return NewEvent(
        stream_id=plan.stream_id,
        stream_type=plan.stream_type,
        event_type=ev.BOOTSTRAP_WORKFLOW_STARTED,
        event_data={"job_id": plan.job_id, "workflow_id": plan.workflow_id, "run_id": run_id},
        idempotency_key=ev.workflow_started_key(plan.pending_event_id),
        event_metadata={"causation_id": str(claimed_id), "source": SOURCE},
    )
