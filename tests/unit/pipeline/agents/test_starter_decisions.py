"""The enqueue and starter decisions, record decoding and dead-letter headers (pure)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson
import pytest

from pipeline import events as ev
from pipeline.agents.deadletter import dead_letter_headers
from pipeline.agents.enqueue import pending_event_for
from pipeline.agents.errors import RecordRejected
from pipeline.agents.records import DomainEvent, decode_record, event_type_of
from pipeline.agents.starter import (
    Decision,
    claimed_event,
    decide,
    plan_emitted,
    plan_start,
    started_event,
    with_claim,
)
from pipeline.eventstore import NewEvent, idempotency_key
from replication.lsn import LSN, Position

ORG = uuid.uuid4()
NOW = datetime(2026, 1, 1, tzinfo=UTC)
ADMINS = [{"email": "ada@example.com", "role": "organization_admin"}]


def domain_event(kind: str, data: dict[str, object]) -> DomainEvent:
    return DomainEvent(
        id=uuid.uuid4(),
        stream_id=ORG,
        stream_type="organization",
        stream_version=1,
        event_type=kind,
        event_data=data,
        event_metadata={"source": "api"},
        idempotency_key=None,
        created_at=NOW,
        position=Position(LSN(0x10), 0),
        commit_ts=NOW,
        xid=7,
    )


INITIATED = domain_event(
    ev.BOOTSTRAP_INITIATED, {"name": "Acme", "subdomain": "acme", "admins": ADMINS}
)


def pending_from_initiated() -> DomainEvent:
    new = pending_event_for(INITIATED)
    assert new is not None
    return domain_event(ev.QUEUE_PENDING, dict(new.event_data))


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


def test_plan_starts_the_deterministic_workflow_with_input_and_job_id() -> None:
    pending = pending_from_initiated()
    plan = plan_start(pending)
    assert plan is not None
    assert plan.workflow_id == f"org-bootstrap-{ORG}"
    assert plan.workflow_type == "OrganizationBootstrapWorkflow"
    assert plan.job_id == str(INITIATED.id)
    assert plan.workflow_input == {
        "org_id": str(ORG),
        "name": "Acme",
        "subdomain": "acme",
        "admins": ADMINS,
        "job_id": str(INITIATED.id),
        # The workflow records workflow_started under the starter's key (invariant 9).
        "pending_event_id": str(pending.id),
    }
    claimed = uuid.uuid4()
    assert with_claim(plan, claimed).workflow_input == {
        **plan.workflow_input,
        "claimed_event_id": str(claimed),
    }
    assert plan_start(INITIATED) is None


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


# ---- decoding ------------------------------------------------------------------------

HEADERS = [
    ("commit_lsn", b"16/B374D848"),
    ("idx", b"2"),
    ("xid", b"747"),
    ("commit_ts", b"2026-01-01T00:00:00+00:00"),
]


def row(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": str(uuid.uuid4()),
        "stream_id": str(ORG),
        "stream_type": "organization",
        "stream_version": 1,
        "event_type": ev.BOOTSTRAP_INITIATED,
        "event_data": {"name": "Acme", "subdomain": "acme", "admins": ADMINS},
        "event_metadata": {"source": "api"},
        "idempotency_key": None,
        "created_at": "2026-01-01T00:00:00.123456+00:00",
    }
    return {**base, **overrides}


def test_decode_reads_the_row_and_its_position() -> None:
    value = row()
    got = decode_record(str(ORG).encode(), orjson.dumps(value), HEADERS)
    assert got.position == Position(LSN.parse("16/B374D848"), 2)
    assert (got.stream_id, got.event_type, got.xid) == (ORG, ev.BOOTSTRAP_INITIATED, 747)
    as_row = got.as_row()
    assert as_row["position"] == got.position
    assert (as_row["commit_lsn"], as_row["idx"]) == (got.position.commit_lsn, 2)


@pytest.mark.parametrize(
    ("key", "value", "headers", "kind"),
    [
        (str(ORG).encode(), b"{not json", HEADERS, "bad_value"),
        (str(ORG).encode(), None, HEADERS, "bad_value"),
        (str(ORG).encode(), b"[1]", HEADERS, "bad_value"),
        (str(ORG).encode(), orjson.dumps(row()), HEADERS[1:], "bad_headers"),
        (
            str(ORG).encode(),
            orjson.dumps(row()),
            [("commit_lsn", b"nope"), *HEADERS[1:]],
            "bad_headers",
        ),
        (str(ORG).encode(), orjson.dumps(row(stream_version=0)), HEADERS, "bad_envelope"),
        (str(ORG).encode(), orjson.dumps({"id": "x"}), HEADERS, "bad_envelope"),
        (b"someone-else", orjson.dumps(row()), HEADERS, "bad_key"),
        (
            str(ORG).encode(),
            orjson.dumps(row(event_data={"name": "Acme", "subdomain": "acme", "admins": []})),
            HEADERS,
            "contract",
        ),
    ],
)
def test_bad_records_are_rejected_with_a_kind(
    key: bytes, value: bytes | None, headers: list[tuple[str, bytes]], kind: str
) -> None:
    with pytest.raises(RecordRejected) as info:
        decode_record(key, value, headers)
    assert info.value.kind == kind


def test_a_workflow_id_other_than_the_streams_is_rejected() -> None:
    data = {
        "job_id": str(uuid.uuid4()),
        "workflow_id": f"org-bootstrap-{uuid.uuid4()}",
        "worker_id": "w",
    }
    value = orjson.dumps(row(event_type=ev.QUEUE_CLAIMED, event_data=data))
    with pytest.raises(RecordRejected) as info:
        decode_record(str(ORG).encode(), value, HEADERS, validate=None)
    assert info.value.kind == "bad_workflow_id"


def test_dead_letter_headers_keep_the_originals_and_say_why_and_where() -> None:
    got = dict(
        dead_letter_headers(
            [*HEADERS, ("reason", b"old")],
            RecordRejected("contract", "event_data.admins: too short"),
            topic="domain-events",
            partition=3,
            offset=42,
        )
    )
    assert got["commit_lsn"] == b"16/B374D848"
    assert got["idx"] == b"2"
    assert got["reason"] == b"contract: event_data.admins: too short"
    assert got["reason_kind"] == b"contract"
    assert (got["original_topic"], got["original_partition"], got["original_offset"]) == (
        b"domain-events",
        b"3",
        b"42",
    )


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


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b'{"event_type": "workflow.queue.pending", "x": 1}', "workflow.queue.pending"),
        (b'{"event_type": 3}', None),
        (b"[1, 2]", None),
        (b"not json", None),
        (None, None),
    ],
)
def test_event_type_of_looks_without_judging(value: bytes | None, expected: str | None) -> None:
    assert event_type_of(value) == expected
