"""The three agents' handlers, free of Faust: a record in, its effects out.

:mod:`pipeline.app` feeds these from Faust streams and acks a record only after its
handler returned, so a record whose effect failed is retried (here, with backoff) and
never dropped. Handlers return normally for records they do not care about.

- enqueue:    organization.bootstrap.initiated → workflow.queue.pending
- starter:    workflow.queue.pending → claimed → Temporal start → workflow_started
              (the steps after decoding: :mod:`pipeline.agents.starting`)
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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from pipeline import events as ev
from pipeline.agents import effects, jobstore
from pipeline.agents.claimcheck import ClaimChecks
from pipeline.agents.dlq import DeadLetterer
from pipeline.agents.enqueue import pending_event_for, pending_event_id
from pipeline.agents.errors import RecordRejected
from pipeline.agents.groupcommit import GroupCommit
from pipeline.agents.projecting import Projector
from pipeline.agents.records import (
    DomainEvent,
    Validator,
)
from pipeline.agents.routing import Routed, route
from pipeline.agents.starter import StartPlan, claimed_event, plan_emitted, plan_start
from pipeline.agents.starting import Starter
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
        # The handoff's statements and the workflow_started emits of concurrent handlers
        # are committed in groups (pipeline.agents.groupcommit).
        self._handoffs = GroupCommit(enqueue_db)
        self._started = GroupCommit(starter_db)
        self._starter = Starter(
            worker_id=worker_id, db=starter_db, temporal=temporal, emits=self._started
        )
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
        for group in (self._handoffs, self._started):
            await group.close()
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
                self._handoffs, pending, pending_id, to_claim, claim
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
            await self._starter.start_claimed(
                plan, handoff.claimed_id, event, record.where, "handoff"
            )
        else:
            # A repeat (the job may have started) or a job of an earlier version: the
            # starter's own steps, which read the history again and decide.
            await self._starter.start_plan(
                plan_emitted(pending, handoff.pending_id), event, record.where, "handoff"
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
            await self._starter.fail_unstartable(event, record.where, exc)
            return
        if plan is None:
            return
        await self._starter.start_plan(plan, event, record.where, "starter")

    # ---- projection ------------------------------------------------------------------

    async def project(self, records: Sequence[Record]) -> None:
        """Fold a batch into every projection and checkpoint it, in one transaction
        (:class:`~pipeline.agents.projecting.Projector`)."""
        await self._projector.project(records)
