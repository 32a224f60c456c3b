"""The enqueue decision: ``organization.bootstrap.initiated`` → ``workflow.queue.pending``.

Pure. The job's id is the id of the initiated event and the emitted event's idempotency
key is derived from it, so a redelivered or replayed request enqueues nothing new
(DESIGN.md invariant 3). The agent in :mod:`pipeline.app` appends the result with
:func:`pipeline.eventstore.emit`.
"""

from __future__ import annotations

import uuid
from typing import Final

from pipeline import events as ev
from pipeline.agents.records import DomainEvent
from pipeline.eventstore import NewEvent, idempotency_key

SOURCE: Final = "pipeline.enqueue"
# The namespace of the pending events' ids (uuid5 of the initiated event's id).
PENDING_IDS: Final = uuid.UUID("0d9c4f67-4a43-5c1e-9a53-7a61f2b8a0c1")


def pending_event_id(initiated_id: uuid.UUID) -> uuid.UUID:
    """The id the enqueue agent gives the pending event of an initiated event.

    Derived from the initiated event's id, so the handoff knows it before the append and
    can claim the job in the same statement (:func:`pipeline.agents.effects.
    emit_pending_and_claim`). The idempotency key still decides what a repeat returns: a
    job enqueued by an earlier version, under a random id, keeps it.
    """
    return uuid.uuid5(PENDING_IDS, f"{initiated_id}:{ev.QUEUE_PENDING}")


def pending_event_for(event: DomainEvent) -> NewEvent | None:
    """The ``workflow.queue.pending`` event that event asks for, or None if it asks none."""
    if event.event_type != ev.BOOTSTRAP_INITIATED:
        return None
    data = event.event_data
    org_id = str(event.stream_id)
    job_id = str(event.id)
    return NewEvent(
        stream_id=event.stream_id,
        stream_type=event.stream_type,
        event_type=ev.QUEUE_PENDING,
        event_data={
            "job_id": job_id,
            "workflow_type": ev.WORKFLOW_TYPE_BOOTSTRAP,
            "workflow_id": ev.workflow_id_for(org_id),
            "source_event_id": job_id,
            "input": {
                "org_id": org_id,
                "name": data.get("name"),
                "subdomain": data.get("subdomain"),
                "admins": data.get("admins"),
            },
        },
        idempotency_key=idempotency_key(event.id, ev.QUEUE_PENDING),
        event_metadata={"causation_id": job_id, "source": SOURCE},
    )
