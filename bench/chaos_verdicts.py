"""Judging a whole chaos run: every organization's verdict and every fault's recovery,
from what the observers read (bench/chaos_observe.py), into the report's Outcome."""

from __future__ import annotations

from bench import chaos_observe as observe
from bench.chaos_checks import (
    Chain,
    duplicate_count,
    first_after,
    judge_chain,
    judge_queue,
    worst_wait,
)
from bench.chaos_drive import Cluster, Emitted
from bench.chaos_plan import RECOVERY_EVENT
from bench.chaos_report import FaultRecord, Outcome
from pipeline import events as ev


def judge_run(
    outcome: Outcome,
    emitted: list[Emitted],
    store: observe.StoreView,
    temporal: observe.TemporalView,
    topic: observe.TopicView,
) -> None:
    examples: dict[str, list[str]] = {
        "lost": [],
        "duplicated": [],
        "out of order": [],
        "Temporal": [],
    }
    for e in emitted:
        chain = store.chains.get(e.org_id, [])
        verdict = judge_chain(Chain(e.org_id, tuple(t for t, _ in chain), e.admins))
        workflow_id = ev.workflow_id_for(e.org_id)
        runs = temporal.runs.get(workflow_id, [])
        run_ids = [run_id for run_id, _ in runs]
        queue = judge_queue(
            store.queue.get(e.org_id), workflow_id, run_ids, store.run_ids.get(e.org_id)
        )
        outcome.completed += verdict.outcome == "completed"
        outcome.failed += verdict.outcome == "failed"
        lost = verdict.missing + queue
        if verdict.outcome == "failed":
            lost.append("workflow.queue.failed")
        if not runs:
            lost.append("no Temporal execution")
        elif len(runs) == 1 and runs[0][1] != observe.COMPLETED:
            lost.append(f"Temporal run {runs[0][1]}")
        duplicated = verdict.duplicated + ([f"{len(runs)} Temporal runs"] if len(runs) > 1 else [])
        if len(runs) != 1 or runs[0][1] != observe.COMPLETED:
            outcome.temporal_not_one_run += 1
            examples["Temporal"].append(f"{workflow_id}: {runs}")
        for what, found in (
            ("lost", lost),
            ("duplicated", duplicated),
            ("out of order", verdict.out_of_order),
        ):
            outcome.reasons.update(f"{what}: {reason}" for reason in found)
            if found:
                examples[what].append(f"{e.org_id}: {', '.join(found)}")
        outcome.lost += bool(lost)
        outcome.duplicated += bool(duplicated)
        outcome.out_of_order += bool(verdict.out_of_order)
    outcome.stuck_jobs = store.stuck_jobs
    outcome.kafka_records = topic.records
    outcome.kafka_duplicates_by_position = duplicate_count(topic.positions)
    outcome.kafka_duplicates_by_id = duplicate_count(topic.event_ids)
    outcome.missing_from_kafka = max(0, store.rows - len(set(topic.event_ids)))
    outcome.examples = examples


def recoveries(
    outcome: Outcome, cluster: Cluster, store: observe.StoreView, t0_wall: float, load_end: float
) -> None:
    times: dict[str, list[float]] = {t: [] for t in set(RECOVERY_EVENT.values())}
    initiated: dict[str, float] = {}
    pending: dict[str, float] = {}
    for org, chain in store.chains.items():
        for event_type, at in chain:
            if event_type in times:
                times[event_type].append(at)
            if event_type == ev.BOOTSTRAP_INITIATED:
                initiated[org] = at
            elif event_type == ev.QUEUE_PENDING:
                pending.setdefault(org, at)
    for series in times.values():
        series.sort()
    injected = cluster.injected
    for i, item in enumerate(injected):
        w = item.window
        until = injected[i + 1].window.start if i + 1 < len(injected) else max(load_end, w.end)
        outcome.faults.append(
            FaultRecord(
                index=w.index,
                kind=w.kind,
                at=w.start - t0_wall,
                seconds=w.end - w.start,
                detail=item.detail,
                recovery=first_after(times[RECOVERY_EVENT[w.kind]], w.end),
                worst_wait=worst_wait(initiated, pending, w.start, until),
            )
        )
