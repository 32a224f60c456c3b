"""The starter's decisions: what to start, whether to start it, its claim and start events
(pure)."""

from __future__ import annotations

import uuid
from dataclasses import replace

import orjson
import pytest
from temporalio.converter import DataConverter

from pipeline import events as ev
from pipeline.agents.enqueue import pending_event_for
from pipeline.agents.errors import RecordRejected
from pipeline.agents.records import DomainEvent
from pipeline.agents.starter import (
    Decision,
    StartPlan,
    claimed_event,
    decide,
    plan_emitted,
    plan_start,
    started_event,
    unstartable,
    with_claim,
)
from pipeline.bootstrap.inputs import Admin, BootstrapInput
from pipeline.eventstore import NewEvent, idempotency_key
from tests.unit.pipeline.agents.samples import (
    ADMINS,
    INITIATED,
    ORG,
    domain_event,
    pending_from_initiated,
)


def test_plan_starts_the_deterministic_workflow_with_input_and_job_id() -> None:
    pending = pending_from_initiated()
    plan = plan_start(pending)
    assert plan is not None
    assert plan.workflow_id == f"org-bootstrap-{ORG}"
    assert plan.workflow_type == "OrganizationBootstrapWorkflow"
    assert plan.job_id == str(INITIATED.id)
    assert plan.workflow_input == BootstrapInput(
        org_id=str(ORG),
        job_id=str(INITIATED.id),
        name="Acme",
        subdomain="acme",
        admins=[Admin(**admin) for admin in ADMINS],
        # The workflow records workflow_started under the starter's key (invariant 9).
        pending_event_id=str(pending.id),
    )
    claimed = uuid.uuid4()
    assert with_claim(plan, claimed).workflow_input == replace(
        plan.workflow_input, claimed_event_id=str(claimed)
    )
    assert plan_start(INITIATED) is None


def test_the_start_argument_is_what_the_workflow_decodes_and_keeps_its_wire_format() -> None:
    # Temporal's default converter: the JSON the workflow receives, read back into the
    # workflow's parameter type. The keys are the ones the dict input used to carry.
    plan = with_claim(plan_for(pending_from_initiated()), uuid.uuid4())
    converter = DataConverter.default.payload_converter
    (payload,) = converter.to_payloads([plan.workflow_input])
    assert orjson.loads(payload.data) == {
        "org_id": str(ORG),
        "job_id": plan.job_id,
        "name": "Acme",
        "subdomain": "acme",
        "admins": ADMINS,
        "pending_event_id": str(plan.pending_event_id),
        "claimed_event_id": plan.workflow_input.claimed_event_id,
    }
    assert converter.from_payloads([payload], [BootstrapInput]) == [plan.workflow_input]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"org_id": None}, "input.org_id"),
        ({"name": 3}, "input.name"),
        ({"subdomain": ["acme"]}, "input.subdomain"),
        ({"admins": "ada@example.com"}, "input.admins"),
        ({"admins": ["ada@example.com"]}, r"input.admins\[0\]"),
        ({"admins": [{"email": "ada@example.com"}]}, r"input.admins\[0\].role"),
    ],
)
def test_an_input_the_workflow_could_not_decode_is_rejected(
    change: dict[str, object], field: str
) -> None:
    with pytest.raises(RecordRejected, match=field) as info:
        plan_start(pending_with_input(change))
    assert info.value.kind == "bad_pending"


def test_unknown_input_keys_are_dropped_as_the_workflow_drops_them() -> None:
    got = plan_for(pending_with_input({"extra": 1})).workflow_input
    pending = pending_from_initiated()
    assert got == replace(plan_for(pending).workflow_input, pending_event_id=got.pending_event_id)


def pending_with_input(change: dict[str, object]) -> DomainEvent:
    data = dict(pending_from_initiated().event_data)
    raw = data["input"]
    assert isinstance(raw, dict)
    return domain_event(ev.QUEUE_PENDING, {**data, "input": {**raw, **change}})


def plan_for(event: DomainEvent) -> StartPlan:
    plan = plan_start(event)
    assert plan is not None
    return plan


def test_plan_rejects_an_unknown_workflow_type() -> None:
    data = dict(pending_from_initiated().event_data, workflow_type="Other")
    with pytest.raises(RecordRejected, match="workflow_type"):
        plan_start(domain_event(ev.QUEUE_PENDING, data))


@pytest.mark.parametrize(
    "history",
    [
        {ev.BOOTSTRAP_WORKFLOW_STARTED},
        {ev.BOOTSTRAP_WORKFLOW_STARTED, ev.QUEUE_COMPLETED, ev.BOOTSTRAP_COMPLETED},
        {ev.BOOTSTRAP_WORKFLOW_STARTED, ev.QUEUE_FAILED},
        # The organization's workflow ran for another job (these name no job).
        {ev.BOOTSTRAP_COMPLETED},
        {ev.BOOTSTRAP_FAILED},
        {ev.QUEUE_CLAIMED, ev.BOOTSTRAP_WORKFLOW_STARTED},
    ],
)
def test_a_job_with_a_recorded_start_or_another_jobs_end_is_never_started_again(
    history: set[str],
) -> None:
    assert decide(history) is Decision.SKIP_ALREADY_STARTED


@pytest.mark.parametrize(
    "history",
    [
        {ev.QUEUE_COMPLETED},
        {ev.QUEUE_FAILED},
        {ev.QUEUE_CLAIMED, ev.QUEUE_COMPLETED, ev.BOOTSTRAP_COMPLETED},
        {ev.QUEUE_CLAIMED, ev.QUEUE_FAILED, ev.BOOTSTRAP_FAILED},
    ],
)
def test_a_job_that_finished_without_a_recorded_start_gets_it_recorded(
    history: set[str],
) -> None:
    # The pipeline died between the start and its record, and the workflow finished
    # before it came back (issue 14 item 1): record the start, do not start again.
    assert decide(history) is Decision.RECORD_START


@pytest.mark.parametrize("history", [set(), {ev.QUEUE_CLAIMED}, {ev.QUEUE_PENDING}])
def test_a_job_not_yet_started_is_started(history: set[str]) -> None:
    # A claim without a start: the previous worker died in between; starting again is
    # safe (USE_EXISTING / REJECT_DUPLICATE make it a no-op in Temporal).
    assert decide(history) is Decision.START


def test_claim_and_start_events_are_keyed_by_the_pending_event() -> None:
    pending = pending_from_initiated()
    plan = plan_start(pending)
    assert plan is not None
    claim = claimed_event(plan, "worker-1")
    assert claim.event_data == {
        "job_id": plan.job_id,
        "workflow_id": plan.workflow_id,
        "worker_id": "worker-1",
    }
    assert claim.idempotency_key == idempotency_key(pending.id, ev.QUEUE_CLAIMED)
    # Another worker claiming the same redelivered job emits with the same key: a no-op.
    assert claimed_event(plan, "worker-2").idempotency_key == claim.idempotency_key
    claim_id = uuid.uuid4()
    start = started_event(plan, "run-1", claim_id)
    assert start.event_data == {
        "job_id": plan.job_id,
        "workflow_id": plan.workflow_id,
        "run_id": "run-1",
    }
    assert start.idempotency_key == idempotency_key(pending.id, ev.BOOTSTRAP_WORKFLOW_STARTED)
    # The workflow's own record of its start uses the same key: one of the two is a no-op.
    assert start.idempotency_key == ev.workflow_started_key(pending.id)
    assert start.event_metadata == {"causation_id": str(claim_id), "source": "pipeline.starter"}


def test_the_handoff_plans_exactly_what_the_starter_plans_from_the_delivered_event() -> None:
    # The enqueue agent starts a job right after appending its pending event; the starter
    # agent later gets the same event from Kafka (a JSON round trip). Both must plan the
    # same start, or the claim and start would not dedupe on their idempotency keys.
    new = pending_event_for(INITIATED)
    assert new is not None
    pending_id = uuid.uuid4()
    delivered = DomainEvent(
        **{
            **{f: getattr(INITIATED, f) for f in DomainEvent.__slots__},
            "id": pending_id,
            "event_type": ev.QUEUE_PENDING,
            "event_data": orjson.loads(orjson.dumps(new.event_data)),
        }
    )
    handoff = plan_emitted(new, pending_id)
    assert handoff == plan_start(delivered)
    assert claimed_event(handoff, "w") == claimed_event(plan_start(delivered) or handoff, "w")


def test_the_handoff_refuses_anything_but_a_pending_event() -> None:
    with pytest.raises(ValueError, match="not a pending event"):
        plan_emitted(
            NewEvent(ORG, "organization", ev.QUEUE_CLAIMED, {}, "k"),
            uuid.uuid4(),
        )


def test_an_unstartable_job_fails_once_with_the_reason() -> None:
    """A pending job whose input the workflow cannot take fails (workflow.queue.failed),
    keyed by the pending event, instead of staying pending for ever."""
    pending = pending_with_input({"org_id": 7})
    with pytest.raises(RecordRejected) as info:
        plan_start(pending)
    job = unstartable(pending, info.value)
    assert job is not None
    assert job.job_id == pending.event_data["job_id"]
    assert job.workflow_id == ev.workflow_id_for(str(pending.stream_id))
    failed = job.failed
    assert failed.event_type == ev.QUEUE_FAILED
    assert failed.stream_id == pending.stream_id
    assert failed.idempotency_key == idempotency_key(pending.id, ev.QUEUE_FAILED)
    assert failed.event_metadata == {"causation_id": str(pending.id), "source": "pipeline.starter"}
    assert failed.event_data == {
        "job_id": job.job_id,
        "workflow_id": job.workflow_id,
        "error": "bad_pending: input.org_id is not a string",
    }
    no_job = replace(pending, event_data={**pending.event_data, "job_id": None})
    assert unstartable(no_job, info.value) is None
    long = RecordRejected("bad_pending", "x" * 5000)
    assert len(str(unstartable(pending, long).failed.event_data["error"])) == 4000  # type: ignore[union-attr]
