"""The starter's steps after a pending job was decoded: claim, start, record the start.

:class:`Starter` is the I/O half of :mod:`pipeline.agents.starter` (whose pure decisions
it acts on): it reads a job's history in the event store, emits the claim, starts the
workflow through :class:`~pipeline.agents.effects.WorkflowStartClient`, and emits
``workflow_started``, each step retried (:func:`~pipeline.agents.effects.with_retries`)
and idempotent. A job whose ``workflow_started`` this process committed is not read
again when its pending event comes back (:meth:`Starter.start_plan`). Both paths to a
start use it: the starter agent
(:meth:`AgentRuntime.start_routed <pipeline.agents.runtime.AgentRuntime.start_routed>`)
and the enqueue handler's handoff.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from typing import Final

from pipeline import events as ev
from pipeline import metrics
from pipeline.agents import effects, jobstore
from pipeline.agents.errors import RecordRejected
from pipeline.agents.records import DomainEvent
from pipeline.agents.starter import (
    Decision,
    StartPlan,
    claimed_event,
    decide,
    started_event,
    unstartable,
    with_claim,
)
from replication import killpoint

log = logging.getLogger(__name__)

# How many recorded starts a Starter remembers (about 200 bytes each): at 100 starts/s,
# the last few minutes, far more than a pending event's trip back through the WAL and
# Kafka takes. A job past them is decided by its history in the store, as before.
RECORDED_STARTS: Final = 20_000


class Starter:
    """Starts the jobs of one process: its worker id, its connections, its Temporal client.

    ``where`` in every step is the consumed record's ``topic[partition]@offset``, for the
    logs; ``cause`` the event consumed (the pending event, or for the handoff the
    initiated one).
    """

    def __init__(
        self,
        *,
        worker_id: str,
        db: effects.Database,
        temporal: effects.WorkflowStartClient,
        emits: effects.Statements | None = None,
    ) -> None:
        self.worker_id = worker_id
        self._db = db
        self._temporal = temporal
        # Where workflow_started goes: the role's group commit (pipeline.agents.groupcommit),
        # so the starts that return together are recorded in one commit.
        self._emits: effects.Statements = emits if emits is not None else db
        # The jobs (pending event ids) whose workflow_started this process committed, the
        # latest RECORDED_STARTS of them: see start_plan.
        self._recorded: OrderedDict[uuid.UUID, None] = OrderedDict()

    async def fail_unstartable(
        self, event: DomainEvent, where: str, rejection: RecordRejected
    ) -> None:
        """A pending job the workflow cannot take (its input lacks a field the workflow
        needs) fails, with the reason, instead of waiting forever: ``workflow.queue.failed``
        (once, keyed by the pending event), unless its history shows it ran."""
        job = unstartable(event, rejection)
        if job is None:
            log.error("not starting %s: %s; it names no job to fail", where, rejection)
            return
        history = await effects.with_retries(
            "starter",
            f"read history of job_id={job.job_id}",
            lambda: jobstore.job_history(self._db, job),
        )
        if history:
            log.info("not failing job_id=%s: already %s", job.job_id, ", ".join(sorted(history)))
            return
        await effects.with_retries(
            "starter",
            f"emit {ev.QUEUE_FAILED} of job_id={job.job_id}",
            lambda: effects.emit_event(self._db, job.failed),
        )
        metrics.WORKFLOW_STARTS.labels("rejected").inc()
        log.warning(
            "job_id=%s cannot start: %s; recorded %s lsn=%s %s",
            job.job_id,
            rejection,
            ev.QUEUE_FAILED,
            event.position,
            where,
        )

    async def start_plan(self, plan: StartPlan, cause: DomainEvent, where: str, path: str) -> None:
        """Start plan's workflow unless its history shows it started; cause is the event
        consumed (the pending event, or for the handoff the initiated one)."""
        workflow_id = plan.workflow_id
        if plan.pending_event_id in self._recorded:
            # This process started the job and committed its workflow_started (the
            # handoff, before the pending event came back through Kafka): the history
            # would say so, and reading it cost a round trip per start.
            metrics.WORKFLOW_STARTS.labels("skipped").inc()
            log.debug(
                "not starting workflow_id=%s job_id=%s: started by this process lsn=%s %s",
                workflow_id,
                plan.job_id,
                cause.position,
                where,
            )
            return
        history = await effects.with_retries(
            "starter",
            f"read history of workflow_id={workflow_id}",
            lambda: jobstore.job_history(self._db, plan),
        )
        decision = decide(history)
        if decision is Decision.SKIP_ALREADY_STARTED:
            metrics.WORKFLOW_STARTS.labels("skipped").inc()
            log.log(
                logging.DEBUG if path == "starter" else logging.INFO,
                "not starting workflow_id=%s job_id=%s: already %s lsn=%s %s",
                workflow_id,
                plan.job_id,
                ", ".join(sorted(history)),
                cause.position,
                where,
            )
            return
        claimed = claimed_event(plan, self.worker_id)
        claimed_id = await effects.with_retries(
            "starter",
            f"emit claim of workflow_id={workflow_id}",
            lambda: effects.emit_event(self._db, claimed),
        )
        killpoint.reached("starter.after_claim")
        if decision is Decision.RECORD_START:
            await self.record_finished_start(plan, claimed_id, history, cause, where)
            return
        await self.start_claimed(plan, claimed_id, cause, where, path)

    async def start_claimed(
        self, plan: StartPlan, claimed_id: uuid.UUID, cause: DomainEvent, where: str, path: str
    ) -> None:
        """Start the workflow of plan's claimed job and record the start."""
        workflow_id = plan.workflow_id
        to_start = with_claim(plan, claimed_id)

        async def start_once() -> tuple[str, bool]:
            try:
                return await self._temporal.start(to_start)
            except Exception:
                # Counted here, retried (and logged with its attempt number) by with_retries.
                metrics.WORKFLOW_STARTS.labels("failed").inc()
                raise

        run_id, fresh = await effects.with_retries(
            "starter", f"start workflow_id={workflow_id}", start_once
        )
        killpoint.reached("starter.after_start")
        metrics.WORKFLOW_STARTS.labels("started" if fresh else "already_started").inc()
        metrics.COMMIT_TO_START_SECONDS.observe(max(0.0, time.time() - cause.commit_ts.timestamp()))
        await self._record_start(plan, run_id, claimed_id)
        log.info(
            "%s workflow_id=%s run_id=%s job_id=%s worker_id=%s via=%s lsn=%s %s",
            "started" if fresh else "already running or done:",
            workflow_id,
            run_id,
            plan.job_id,
            self.worker_id,
            path,
            cause.position,
            where,
        )

    async def record_finished_start(
        self,
        plan: StartPlan,
        claimed_id: uuid.UUID,
        history: frozenset[str],
        cause: DomainEvent,
        where: str,
    ) -> None:
        """Record the start of a job that finished without a record of it (see starter).

        The run id is Temporal's; once Temporal no longer knows the execution (past its
        retention), the one the workflow's own events carry.
        """
        workflow_id = plan.workflow_id
        run_id = await effects.with_retries(
            "starter",
            f"describe workflow_id={workflow_id}",
            lambda: self._temporal.run_id_of(workflow_id),
        )
        if run_id is None:
            run_id = await effects.with_retries(
                "starter",
                f"read the run id of workflow_id={workflow_id}",
                lambda: jobstore.recorded_run_id(self._db, plan),
            )
        if run_id is None:
            log.error(
                "workflow_id=%s job_id=%s finished (%s) but neither Temporal nor its events "
                "know its run id: workflow_started not recorded lsn=%s %s",
                workflow_id,
                plan.job_id,
                ", ".join(sorted(history)),
                cause.position,
                where,
            )
            return
        await self._record_start(plan, run_id, claimed_id)
        log.info(
            "recorded the start of finished workflow_id=%s run_id=%s job_id=%s lsn=%s %s",
            workflow_id,
            run_id,
            plan.job_id,
            cause.position,
            where,
        )

    async def _record_start(self, plan: StartPlan, run_id: str, claimed_id: uuid.UUID) -> None:
        """Emit the job's ``workflow_started`` (once: it is keyed by the pending event)."""
        started = started_event(plan, run_id, claimed_id)
        await effects.with_retries(
            "starter",
            f"emit workflow_started of workflow_id={plan.workflow_id}",
            lambda: effects.emit_event(self._emits, started),
        )
        self._recorded[plan.pending_event_id] = None
        if len(self._recorded) > RECORDED_STARTS:
            self._recorded.popitem(last=False)
