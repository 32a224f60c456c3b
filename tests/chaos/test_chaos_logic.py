"""The chaos harness's pure parts: its plan is a function of the seed, and its verdicts
catch what they must (no services needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chaos_checks import (
    Chain,
    QueueRow,
    duplicate_count,
    first_after,
    judge_chain,
    judge_queue,
    order_problems,
    worst_wait,
)
from bench.chaos_plan import FAULT_KINDS, RUN_KILL, TEMPORAL_OUTAGE, Options, make_plan
from bench.chaos_report import update_docs
from pipeline import events as ev

COMPLETED_CHAIN = (
    ev.BOOTSTRAP_INITIATED,
    ev.QUEUE_PENDING,
    ev.QUEUE_CLAIMED,
    ev.BOOTSTRAP_WORKFLOW_STARTED,
    ev.ORGANIZATION_CREATED,
    ev.DNS_RECORD_CREATED,
    ev.USER_INVITED,
    ev.USER_INVITED,
    ev.INVITATION_EMAIL_SENT,
    ev.INVITATION_EMAIL_SENT,
    ev.BOOTSTRAP_COMPLETED,
    ev.QUEUE_COMPLETED,
)


def options(**overrides: object) -> Options:
    base: dict[str, object] = {
        "seed": 14,
        "bootstraps": 300,
        "rate": 3.0,
        "faults": 6,
        "replicas": 2,
    }
    base.update(overrides)
    return Options(**base)  # type: ignore[arg-type]


def test_the_same_seed_gives_the_same_plan_and_another_seed_another() -> None:
    assert make_plan(options()) == make_plan(options())
    assert make_plan(options()).faults != make_plan(options(seed=15)).faults
    assert make_plan(options()).emissions != make_plan(options(seed=15)).emissions


@pytest.mark.parametrize("seed", range(20))
def test_every_fault_kind_comes_at_least_once_inside_the_load(seed: int) -> None:
    plan = make_plan(options(seed=seed, faults=9))
    assert {f.kind for f in plan.faults} == set(FAULT_KINDS)
    assert len(plan.faults) == 9
    assert all(0 < f.at < plan.load_seconds for f in plan.faults)
    assert [f.at for f in plan.faults] == sorted(f.at for f in plan.faults)
    assert {e.signature for e in plan.emissions} == {"stream", "aggregate"}
    assert all(f.hold == 30.0 for f in plan.faults if f.kind == TEMPORAL_OUTAGE)
    assert all(f.target in (0, 1) for f in plan.faults if f.kind == RUN_KILL)


def test_a_plan_with_fewer_faults_than_kinds_is_refused() -> None:
    with pytest.raises(ValueError, match="one of each kind"):
        make_plan(options(faults=5))


def test_a_complete_chain_in_order_passes() -> None:
    verdict = judge_chain(Chain("o", COMPLETED_CHAIN, admins=2))
    assert verdict.outcome == "completed"
    assert (verdict.missing, verdict.duplicated, verdict.out_of_order) == ([], [], [])


def test_a_missing_workflow_started_is_lost_bookkeeping() -> None:
    chain = tuple(t for t in COMPLETED_CHAIN if t != ev.BOOTSTRAP_WORKFLOW_STARTED)
    verdict = judge_chain(Chain("o", chain, admins=2))
    assert verdict.missing == [ev.BOOTSTRAP_WORKFLOW_STARTED]


def test_workflow_started_after_the_workflows_own_event_is_out_of_order() -> None:
    chain = list(COMPLETED_CHAIN)
    chain[3], chain[4] = chain[4], chain[3]
    assert order_problems(chain) == [
        f"{ev.ORGANIZATION_CREATED} before {ev.BOOTSTRAP_WORKFLOW_STARTED}"
    ]
    claimed_late = [chain[0], chain[2], chain[1], *chain[3:]]
    assert f"{ev.QUEUE_PENDING} before {ev.QUEUE_CLAIMED}" not in order_problems(claimed_late)
    assert f"{ev.QUEUE_CLAIMED} before {ev.QUEUE_PENDING}" in order_problems(claimed_late)


def test_an_event_after_the_outcome_is_out_of_order() -> None:
    chain = (*COMPLETED_CHAIN, ev.INVITATION_EMAIL_SENT)
    assert order_problems(chain) == [f"{ev.INVITATION_EMAIL_SENT} after {ev.QUEUE_COMPLETED}"]


def test_a_doubled_effect_is_duplicated() -> None:
    chain = (*COMPLETED_CHAIN[:4], ev.BOOTSTRAP_WORKFLOW_STARTED, *COMPLETED_CHAIN[4:])
    verdict = judge_chain(Chain("o", chain, admins=2))
    assert verdict.duplicated == [f"{ev.BOOTSTRAP_WORKFLOW_STARTED} x2"]
    three_invites = (*COMPLETED_CHAIN[:6], ev.USER_INVITED, *COMPLETED_CHAIN[6:])
    assert judge_chain(Chain("o", three_invites, admins=2)).duplicated == [f"{ev.USER_INVITED} x3"]


def test_a_chain_without_outcome_has_no_outcome() -> None:
    verdict = judge_chain(Chain("o", COMPLETED_CHAIN[:4], admins=1))
    assert verdict.outcome == "none"
    assert verdict.missing == []


def test_the_queue_row_must_carry_temporals_run() -> None:
    wid = "org-bootstrap-o"
    good = QueueRow("completed", wid, "r1", True)
    assert judge_queue(good, wid, ["r1"], "r1") == []
    assert judge_queue(None, wid, ["r1"], "r1") == ["no queue row"]
    assert judge_queue(QueueRow("completed", wid, None, False), wid, ["r1"], None) == [
        "queue run_id/started_at NULL"
    ]
    assert judge_queue(QueueRow("processing", wid, "r2", True), wid, ["r1"], "r2") == [
        "queue row processing",
        "queue run_id is not Temporal's",
        "workflow_started run_id is not Temporal's",
    ]


def test_duplicates_recovery_and_waits() -> None:
    assert duplicate_count([("0/1", "0"), ("0/1", "1"), ("0/1", "0"), ("0/1", "0")]) == 2
    assert duplicate_count([]) == 0
    assert first_after([1.0, 2.0, 5.0], 2.0) == 3.0
    assert first_after([1.0, 2.0], 2.0) is None
    initiated = {"a": 10.0, "b": 11.0, "c": 30.0}
    pending = {"a": 10.5, "b": 20.0}
    assert worst_wait(initiated, pending, 10.0, 25.0) == 9.0
    assert worst_wait(initiated, {}, 29.0, 40.0) == 10.0
    assert worst_wait(initiated, pending, 50.0, 60.0) is None


def test_update_docs_replaces_only_its_own_section(tmp_path: Path) -> None:
    doc = tmp_path / "reliability.md"
    doc.write_text("# Reliability\n\nintro\n")
    update_docs(doc, "short", "first short\n")
    update_docs(doc, "long", "the long run\n")
    update_docs(doc, "short", "second short\n")
    text = doc.read_text()
    assert text.startswith("# Reliability\n\nintro\n")
    assert "first short" not in text
    assert text.count("second short") == 1
    assert text.count("the long run") == 1
