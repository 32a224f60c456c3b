"""The starter remembers the starts it recorded: when the pending event of a job this
process handed off comes back through Kafka, the starter agent skips it without reading
the job's history (a round trip per start); any other job is decided by its history.
No services: the database and Temporal are fakes that count their uses."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, cast

import pytest

from pipeline import events as ev
from pipeline import metrics
from pipeline.agents import effects, jobstore, starting
from pipeline.agents.records import DomainEvent
from pipeline.agents.starter import StartPlan, plan_start
from pipeline.agents.starting import Starter
from tests.unit.pipeline.agents.samples import pending_from_initiated


class _Emits:
    """Statements that record what is emitted and return a fresh id."""

    def __init__(self) -> None:
        self.types: list[str] = []

    async def fetchone(
        self, query: str, params: Any, *, stream: object = None
    ) -> tuple[object, ...] | None:
        self.types.append(str(params[2]))
        return (uuid.uuid4(),)


class _Temporal:
    def __init__(self) -> None:
        self.started: list[str] = []

    async def start(self, plan: StartPlan) -> tuple[str, bool]:
        self.started.append(plan.workflow_id)
        return "run-1", True


@pytest.fixture
def histories(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every history read (the jobs' workflow ids); each finds the job never started."""
    read: list[str] = []

    async def job_history(db: object, plan: jobstore.Job) -> frozenset[str]:
        read.append(plan.workflow_id)
        return frozenset()

    monkeypatch.setattr(jobstore, "job_history", job_history)
    return read


@dataclass
class _Setup:
    starter: Starter
    temporal: _Temporal
    emits: _Emits
    pending: DomainEvent
    plan: StartPlan


@pytest.fixture
def setup() -> _Setup:
    """A Starter whose claim (the role's database) and workflow_started (its group
    commit) both go to the recording fake, and a pending job (history reads: above)."""
    temporal, emits = _Temporal(), _Emits()
    starter = Starter(
        worker_id="w",
        db=cast(effects.Database, emits),
        temporal=cast(effects.WorkflowStartClient, temporal),
        emits=emits,
    )
    pending = pending_from_initiated()
    plan = plan_start(pending)
    assert plan is not None
    return _Setup(starter, temporal, emits, pending, plan)


def _skipped() -> float:
    return float(metrics.WORKFLOW_STARTS.labels("skipped")._value.get())


async def test_a_handed_off_job_is_skipped_without_reading_its_history(
    histories: list[str], setup: _Setup
) -> None:
    starter, temporal, emits, pending, plan = (
        setup.starter,
        setup.temporal,
        setup.emits,
        setup.pending,
        setup.plan,
    )
    # The handoff: claimed in its statement, then started and recorded.
    await starter.start_claimed(plan, uuid.uuid4(), pending, "t[0]@1", "handoff")
    assert emits.types == [ev.BOOTSTRAP_WORKFLOW_STARTED]
    skipped = _skipped()
    # The pending event comes back through Kafka to the starter agent.
    await starter.start_plan(plan, pending, "t[0]@2", "starter")
    assert histories == []
    assert temporal.started == [plan.workflow_id]  # once
    assert emits.types == [ev.BOOTSTRAP_WORKFLOW_STARTED]  # no claim, nothing more
    assert _skipped() == skipped + 1


async def test_a_job_this_process_did_not_record_is_decided_by_its_history(
    histories: list[str], setup: _Setup
) -> None:
    await setup.starter.start_plan(setup.plan, setup.pending, "t[0]@2", "starter")
    assert histories == [setup.plan.workflow_id]
    assert setup.emits.types == [ev.QUEUE_CLAIMED, ev.BOOTSTRAP_WORKFLOW_STARTED]
    assert setup.temporal.started == [setup.plan.workflow_id]


async def test_only_the_latest_recorded_starts_are_remembered(
    histories: list[str], setup: _Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(starting, "RECORDED_STARTS", 2)
    starter, pending, base = setup.starter, setup.pending, setup.plan
    plans = [
        StartPlan(
            **{**{f: getattr(base, f) for f in base.__slots__}, "pending_event_id": uuid.uuid4()}
        )
        for _ in range(3)
    ]
    for plan in plans:
        await starter.start_claimed(plan, uuid.uuid4(), pending, "t[0]@1", "handoff")
    for plan in reversed(plans):  # the two remembered first
        await starter.start_plan(plan, pending, "t[0]@2", "starter")
    # The first fell out of the memory: its history is read (and, the fake finding none,
    # it is claimed and started again: idempotent in the real store and Temporal).
    assert histories == [plans[0].workflow_id]
