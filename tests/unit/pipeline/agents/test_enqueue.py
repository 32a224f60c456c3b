"""The enqueue agent's decision: a bootstrap asks for one pending job (pure)."""

from __future__ import annotations

import uuid

from pipeline import events as ev
from pipeline.agents.enqueue import pending_event_for, pending_event_id
from pipeline.eventstore import idempotency_key
from tests.unit.pipeline.agents.samples import ADMINS, INITIATED, ORG, domain_event


def test_initiated_asks_for_one_pending_job_keyed_by_its_id() -> None:
    new = pending_event_for(INITIATED)
    assert new is not None
    assert new.event_type == ev.QUEUE_PENDING
    assert (new.stream_id, new.stream_type) == (ORG, "organization")
    assert new.event_data == {
        "job_id": str(INITIATED.id),
        "workflow_type": "OrganizationBootstrapWorkflow",
        "workflow_id": f"org-bootstrap-{ORG}",
        "source_event_id": str(INITIATED.id),
        "input": {"org_id": str(ORG), "name": "Acme", "subdomain": "acme", "admins": ADMINS},
    }
    assert new.idempotency_key == idempotency_key(INITIATED.id, ev.QUEUE_PENDING)
    assert new.event_metadata == {"causation_id": str(INITIATED.id), "source": "pipeline.enqueue"}
    assert pending_event_for(INITIATED) == new  # deterministic: a redelivery emits the same


def test_enqueue_ignores_other_events() -> None:
    assert pending_event_for(domain_event(ev.ORGANIZATION_CREATED, {})) is None


def test_the_pending_event_id_is_derived_from_the_initiated_id_alone() -> None:
    """The handoff claims in the same statement as the append, so it must know the pending
    event's id before it: the same initiated event, the same id; another, another."""
    a, b = uuid.uuid4(), uuid.uuid4()
    assert pending_event_id(a) == pending_event_id(uuid.UUID(str(a)))
    assert pending_event_id(a) != pending_event_id(b)
    assert pending_event_id(a) != a
    # Fixed forever: a changed derivation would claim a redelivered job under a new id.
    fixed = uuid.UUID("6f1b1b5e-0000-4000-8000-000000000001")
    assert pending_event_id(fixed) == uuid.UUID("6cd75dad-f2df-5623-8584-c5e48b9cec0c")
