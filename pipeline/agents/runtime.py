"""The three agents' handlers, free of Faust: a record in, its effects out.

:mod:`pipeline.app` feeds these from Faust streams and acks a record only after its
handler returned, so a record whose effect failed is retried (here, with backoff) and
never dropped. Handlers return normally for records they do not care about.

- enqueue:    organization.bootstrap.initiated → workflow.queue.pending
- starter:    workflow.queue.pending → claimed → Temporal start → workflow_started
- projection: every event → the projection appliers, plus the partition checkpoints, in
              one transaction; undecodable or invalid records → the dead-letter topic.
  Only the projection agent dead-letters (it sees every record), so a bad record is
  dead-lettered once; the other two skip it.

The enqueue and starter handlers take a :class:`~pipeline.agents.routing.Routed` record
(its ``event_type`` header read, or its value parsed once when it has none), so they pass
over the records of other types without parsing them.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from pipeline import events as ev
from pipeline import metrics
from pipeline.agents import effects, jobstore
from pipeline.agents.claimcheck import ClaimChecks
from pipeline.agents.dlq import DeadLetterer
from pipeline.agents.enqueue import pending_event_for, pending_event_id
from pipeline.agents.errors import RecordRejected
from pipeline.agents.projecting import Projector
from pipeline.agents.records import (
    DomainEvent,
    Validator,
)
from pipeline.agents.routing import Routed, route
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
from pipeline.contract import validate_event
from pipeline.projections.registry import PROJECTIONS, ProjectionApplier
from replication import killpoint

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Record:
    """A consumed Kafka record, as the handlers see it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    @property
    def where(self) -> str:
        """``topic[partition]@offset``, the form operators grep logs for."""
        return f"{self.topic}[{self.partition}]@{self.offset}"


DeadLetterSend = Callable[[Record, list[tuple[str, bytes]]], Awaitable[None]]


class AgentRuntime:
    """State shared by the handlers of one process: connections, Temporal, identity."""

    def __init__(
        self,
        *,
        worker_id: str,
        consumer: str,
        enqueue_db: effects.Database,
        starter_db: effects.Database,
        projection_db: effects.Database,
        temporal: effects.WorkflowStartClient,
        dead_letter: DeadLetterSend,
        projections: Sequence[ProjectionApplier] = PROJECTIONS,
        validate: Validator | None = validate_event,
        handoff: bool = True,
    ) -> None:
        self.worker_id = worker_id
        self.consumer = consumer
        self._enqueue_db = enqueue_db
        self._starter_db = starter_db
        self._projection_db = projection_db
        self._temporal = temporal
        # Once per (position, reason), bounded: pipeline.agents.dlq.
        self.dead_letters = DeadLetterer(
            effects.Database(projection_db.dsn, "deadletter"), dead_letter
        )
        self._claim_checks = ClaimChecks(
            effects.Database(projection_db.dsn, "claimcheck"), "agents"
        )
        self._validate = validate
        self._projector = Projector(
            consumer=consumer,
            db=projection_db,
            projections=projections,
            validate=validate,
            claim_checks=self._claim_checks,
            dead_letters=self.dead_letters,
        )
        # Start a job right after enqueueing it (see enqueue); the starter agent remains
        # the path that guarantees the start, this one only makes it sooner.
        self._handoff = handoff

    async def close(self) -> None:
        """Close the database connections."""
        for db in (self._enqueue_db, self._starter_db, self._projection_db):
            await db.close()
        await self.dead_letters.close()
        await self._claim_checks.close()

    async def _decode(self, record: Record, row: dict[str, object] | None = None) -> DomainEvent:
        # A claim check's payload is read from the store (pipeline.agents.claimcheck);
        # row: the value routing already parsed, if it had to.
        return await self._claim_checks.decode(record, self._validate, row)

    # ---- enqueue ---------------------------------------------------------------------

    @staticmethod
    def wants_enqueue(routed: Routed) -> bool:
        """Whether :meth:`enqueue_routed` acts on the record (no value parsed, no validation)."""
        return routed.event_type == ev.BOOTSTRAP_INITIATED

    @staticmethod
    def wants_start(routed: Routed) -> bool:
        """Whether :meth:`start_routed` acts on the record (no value parsed, no validation)."""
        return routed.event_type == ev.QUEUE_PENDING

    async def handle(self, routed: Routed) -> None:
        """The enqueue or the start a routed record asks for; nothing for other types."""
        if self.wants_enqueue(routed):
            await self.enqueue_routed(routed)
        elif self.wants_start(routed):
            await self.start_routed(routed)

    async def enqueue(self, record: Record) -> None:
        """:meth:`enqueue_routed` of a record not routed yet (replay, redrive)."""
        await self.enqueue_routed(route(record))

    async def start(self, record: Record) -> None:
        """:meth:`start_routed` of a record not routed yet (replay, redrive)."""
        await self.start_routed(route(record))

    async def enqueue_routed(self, routed: Routed) -> None:
        """Emit the pending job an initiated event asks for, then start it (the handoff).

        Both steps happen once whatever redelivers. Starting here saves the pending
        event's round trip through the WAL, Kafka and the starter agent before the
        workflow starts; that round trip still happens, and the starter agent then finds
        the job started and skips it, or starts it if this process died first.
        """
        if not self.wants_enqueue(routed):
            return
        record = routed.record
        try:
            event = await self._decode(record, routed.row)
        except RecordRejected:
            return  # the projection agent dead-letters it
        pending = pending_event_for(event)
        if pending is None:
            return
        plan: StartPlan | None = None
        if self._handoff:
            pending_id = pending_event_id(event.id)
            try:
                plan = plan_emitted(pending, pending_id)
            except RecordRejected as exc:  # pragma: no cover - enqueue builds valid ones
                log.error("no handoff for job_id=%s: %s", event.id, exc)
        if plan is None:
            event_id = await effects.with_retries(
                "enqueue",
                f"emit {pending.event_type} at {record.where}",
                lambda: effects.emit_event(self._enqueue_db, pending),
            )
            log.info(
                "enqueued job_id=%s as event %s lsn=%s %s",
                event.id,
                event_id,
                event.position,
                record.where,
            )
            return
        # The handoff: the pending event and, for a job never started, its claim, in one
        # statement; then the start.
        claim = claimed_event(plan, self.worker_id)
        to_claim = plan
        handoff = await effects.with_retries(
            "enqueue",
            f"emit {pending.event_type} at {record.where}",
            lambda: jobstore.emit_pending_and_claim(
                self._enqueue_db, pending, pending_id, to_claim, claim
            ),
        )
        log.info(
            "enqueued job_id=%s as event %s%s lsn=%s %s",
            event.id,
            handoff.pending_id,
            " and claimed it" if handoff.claimed_id is not None else "",
            event.position,
            record.where,
        )
        if handoff.claimed_id is not None:
            killpoint.reached("starter.after_claim")
            await self._start_claimed(plan, handoff.claimed_id, event, record, "handoff")
        else:
            # A repeat (the job may have started) or a job of an earlier version: the
            # starter's own steps, which read the history again and decide.
            await self._start_plan(
                plan_emitted(pending, handoff.pending_id), event, record, "handoff"
            )

    # ---- starter ---------------------------------------------------------------------

    async def start_routed(self, routed: Routed) -> None:
        """Claim a pending job, start its workflow, record the start; each step idempotent."""
        if not self.wants_start(routed):
            return
        record = routed.record
        try:
            event = await self._decode(record, routed.row)
        except RecordRejected as exc:
            log.debug("starter skips %s: %s", record.where, exc)  # the projection dead-letters
            return
        try:
            plan = plan_start(event)
        except RecordRejected as exc:
            await self._fail_unstartable(event, record, exc)
            return
        if plan is None:
            return
        await self._start_plan(plan, event, record, "starter")

    async def _fail_unstartable(
        self, event: DomainEvent, record: Record, rejection: RecordRejected
    ) -> None:
        """A pending job the workflow cannot take (its input lacks a field the workflow
        needs) fails, with the reason, instead of waiting forever: ``workflow.queue.failed``
        (once, keyed by the pending event), unless its history shows it ran."""
        job = unstartable(event, rejection)
        if job is None:
            log.error("not starting %s: %s; it names no job to fail", record.where, rejection)
            return
        history = await effects.with_retries(
            "starter",
            f"read history of job_id={job.job_id}",
            lambda: jobstore.job_history(self._starter_db, job),
        )
        if history:
            log.info("not failing job_id=%s: already %s", job.job_id, ", ".join(sorted(history)))
            return
        await effects.with_retries(
            "starter",
            f"emit {ev.QUEUE_FAILED} of job_id={job.job_id}",
            lambda: effects.emit_event(self._starter_db, job.failed),
        )
        metrics.WORKFLOW_STARTS.labels("rejected").inc()
        log.warning(
            "job_id=%s cannot start: %s; recorded %s lsn=%s %s",
            job.job_id,
            rejection,
            ev.QUEUE_FAILED,
            event.position,
            record.where,
        )

    async def _start_plan(
        self, plan: StartPlan, cause: DomainEvent, record: Record, path: str
    ) -> None:
        """Start plan's workflow unless its history shows it started; cause is the event
        consumed (the pending event, or for the handoff the initiated one)."""
        workflow_id = plan.workflow_id
        history = await effects.with_retries(
            "starter",
            f"read history of workflow_id={workflow_id}",
            lambda: jobstore.job_history(self._starter_db, plan),
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
                record.where,
            )
            return
        claimed = claimed_event(plan, self.worker_id)
        claimed_id = await effects.with_retries(
            "starter",
            f"emit claim of workflow_id={workflow_id}",
            lambda: effects.emit_event(self._starter_db, claimed),
        )
        killpoint.reached("starter.after_claim")
        if decision is Decision.RECORD_START:
            await self._record_finished_start(plan, claimed_id, history, cause, record)
            return
        await self._start_claimed(plan, claimed_id, cause, record, path)

    async def _start_claimed(
        self, plan: StartPlan, claimed_id: uuid.UUID, cause: DomainEvent, record: Record, path: str
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
        started = started_event(plan, run_id, claimed_id)
        await effects.with_retries(
            "starter",
            f"emit workflow_started of workflow_id={workflow_id}",
            lambda: effects.emit_event(self._starter_db, started),
        )
        log.info(
            "%s workflow_id=%s run_id=%s job_id=%s worker_id=%s via=%s lsn=%s %s",
            "started" if fresh else "already running or done:",
            workflow_id,
            run_id,
            plan.job_id,
            self.worker_id,
            path,
            cause.position,
            record.where,
        )

    async def _record_finished_start(
        self,
        plan: StartPlan,
        claimed_id: uuid.UUID,
        history: frozenset[str],
        cause: DomainEvent,
        record: Record,
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
                lambda: jobstore.recorded_run_id(self._starter_db, plan),
            )
        if run_id is None:
            log.error(
                "workflow_id=%s job_id=%s finished (%s) but neither Temporal nor its events "
                "know its run id: workflow_started not recorded lsn=%s %s",
                workflow_id,
                plan.job_id,
                ", ".join(sorted(history)),
                cause.position,
                record.where,
            )
            return
        started = started_event(plan, run_id, claimed_id)
        await effects.with_retries(
            "starter",
            f"emit workflow_started of workflow_id={workflow_id}",
            lambda: effects.emit_event(self._starter_db, started),
        )
        log.info(
            "recorded the start of finished workflow_id=%s run_id=%s job_id=%s lsn=%s %s",
            workflow_id,
            run_id,
            plan.job_id,
            cause.position,
            record.where,
        )

    # ---- projection ------------------------------------------------------------------

    async def project(self, records: Sequence[Record]) -> None:
        """Fold a batch into every projection and checkpoint it, in one transaction
        (:class:`~pipeline.agents.projecting.Projector`)."""
        await self._projector.project(records)
