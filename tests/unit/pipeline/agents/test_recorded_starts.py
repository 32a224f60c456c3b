"""The starter remembers the starts it recorded: when the pending event of a job this
process handed off comes back through Kafka, the starter agent skips it without reading
the job's history (a round trip per start); any other job is decided by its history.
No services: the database and Temporal are fakes that count their uses."""

from __future__ import annotations

import uuid
from typing import Any, cast

import pytest

from pipeline import events as ev
from pipeline import metrics
from pipeline.agents import effects, jobstore, starting
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


def _starter(temporal: _Temporal, emits: _Emits) -> Starter:
    # The claim goes to the role's database, workflow_started to its group commit: both
    # are the recording fake here (the history reads are patched above).
    return Starter(
        worker_id="w",
        db=cast(effects.Database, emits),
        temporal=cast(effects.WorkflowStartClient, temporal),
        emits=emits,
    )


def _skipped() -> float:
    return float(metrics.WORKFLOW_STARTS.labels("skipped")._value.get())


async def test_a_handed_off_job_is_skipped_without_reading_its_history(
    histories: list[str],
) -> None:
    temporal, emits = _Temporal(), _Emits()
    starter = _starter(temporal, emits)
    pending = pending_from_initiated()
    plan = plan_start(pending)
    assert plan is not None
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
    histories: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    temporal, emits = _Temporal(), _Emits()
    starter = _starter(temporal, emits)
    pending = pending_from_initiated()
    plan = plan_start(pending)
    assert plan is not None
    await starter.start_plan(plan, pending, "t[0]@2", "starter")
    assert histories == [plan.workflow_id]
    assert emits.types == [ev.QUEUE_CLAIMED, ev.BOOTSTRAP_WORKFLOW_STARTED]
    assert temporal.started == [plan.workflow_id]


async def test_only_the_latest_recorded_starts_are_remembered(
    histories: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(starting, "RECORDED_STARTS", 2)
    temporal, emits = _Temporal(), _Emits()
    starter = _starter(temporal, emits)
    pending = pending_from_initiated()
    base = plan_start(pending)
    assert base is not None
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
