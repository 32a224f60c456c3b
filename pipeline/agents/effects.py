"""The agents' I/O: the event store, Temporal, and the one place that decides to retry.

Thin adapters; the decisions are in :mod:`pipeline.agents.enqueue` and
:mod:`pipeline.agents.starter`, what to do about an error in :mod:`replication.retry`'s
table. Every effect here is idempotent (keyed emits, a deterministic workflow id with a
reuse and conflict policy that make a second start a no-op), which is what makes
retrying any of them safe.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Final, TypeVar

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import TupleRow

from pipeline import metrics
from pipeline.agents.starter import JOB_DONE, STARTED_OR_DONE, StartPlan
from pipeline.eventstore import NewEvent, emit, json_param
from pipeline.security import TemporalSecurity, connect_temporal
from replication.retry import Directive, classify

if TYPE_CHECKING:
    from temporalio.client import Client

log = logging.getLogger(__name__)
T = TypeVar("T")

START_RPC_TIMEOUT: Final = timedelta(seconds=15)


def retry_delay(attempt: int, *, base: float = 0.5, cap: float = 30.0) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based): doubling, capped."""
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    # Bound the exponent so a long outage cannot overflow the float.
    return min(cap, base * 2.0 ** min(attempt - 1, 32))


async def with_retries(agent: str, what: str, action: Callable[[], Awaitable[T]]) -> T:
    """Run action until it succeeds, doing what :mod:`replication.retry`'s table says.

    The one retry decision of the agents. A record is never dropped: the agent acks it
    only once its effects happened, and an exception reaching the dispatcher would ack it
    without them. So:

    - RETRY (an outage): retried, waiting longer after each failure (capped); a warning.
    - WAIT (the operator must act: a privilege, a migration, Temporal's namespace or
      credentials): retried the same way, each failure logged as an error with the hint;
      the record's stream waits until it is fixed.
    - FATAL (no listed kind: a bug, or data the code did not expect): logged critical
      with the hint, the traceback on the first failure, and retried with the same capped
      backoff, so only the record's own stream waits for the fix. Two alternatives were
      weighed and refused. Stopping the process would stop the reader and every other
      stream with it, and the restarted process would meet the same record again: one
      record would stop the pipeline, the failure issue 13 rules out (and the slot's WAL
      would pile up meanwhile). Dead-lettering would ack the record without its effect:
      a bug that is not the record's fault would empty its stream into the dead-letter
      topic. A deployed fix is picked up at the next attempt (at most 30 s later).
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            return await action()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # classified below; none is dropped
            rule = classify(exc)
            delay = retry_delay(attempt)
            metrics.AGENT_RETRIES.labels(agent).inc()
            if rule.directive is Directive.FATAL:
                log.critical(
                    "%s: %s failed (attempt=%d) with an error retrying cannot fix: %s: %s; "
                    "this stream waits, retrying in %.1fs, until it is fixed (%s)",
                    agent,
                    what,
                    attempt,
                    type(exc).__name__,
                    exc,
                    delay,
                    rule.hint,
                    exc_info=exc if attempt == 1 else None,
                )
                await asyncio.sleep(delay)
                continue
            log.log(
                logging.WARNING if rule.directive is Directive.RETRY else logging.ERROR,
                "%s: %s failed (attempt=%d), retrying in %.1fs: %s: %s (%s)",
                agent,
                what,
                attempt,
                delay,
                type(exc).__name__,
                exc,
                rule.hint,
            )
            await asyncio.sleep(delay)


class Database:
    """PostgreSQL connections of one role, reopened when they break.

    ``connection()`` is the role's one shared connection: psycopg runs its statements one
    after the other, so a role whose work is one transaction at a time (the projection's
    batch, which must not interleave with anything else) uses it. ``borrow()`` lends one
    of up to ``size`` connections for a statement or a transaction, so the handlers'
    single statements (a claim, a history read, a ``workflow_started``) of different
    streams run concurrently instead of queueing behind one another on one connection.
    With ``size`` 1 ``borrow()`` lends the shared connection.
    """

    def __init__(self, dsn: str, name: str, size: int = 1) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self._dsn = dsn
        self._name = name
        self._size = size
        self._conn: psycopg.AsyncConnection[TupleRow] | None = None
        # Up to the dispatcher's cap of handlers ask for the connection at once: one of them
        # reconnects, the others wait for it instead of each opening a connection.
        self._lock = asyncio.Lock()
        self._idle: list[psycopg.AsyncConnection[TupleRow]] = []
        self._lent: set[psycopg.AsyncConnection[TupleRow]] = set()
        self._slots = asyncio.Semaphore(size)

    @property
    def dsn(self) -> str:
        """The connection string (for a sibling connection of the same database)."""
        return self._dsn

    async def _connect(self) -> psycopg.AsyncConnection[TupleRow]:
        return await psycopg.AsyncConnection.connect(
            self._dsn, autocommit=True, application_name=f"pipeline-{self._name}"
        )

    async def connection(self) -> psycopg.AsyncConnection[TupleRow]:
        """The live connection (autocommit; callers open transactions explicitly)."""
        async with self._lock:
            if self._conn is None or self._conn.closed or self._conn.broken:
                if self._conn is not None:
                    await self._conn.close()
                self._conn = await self._connect()
            return self._conn

    @asynccontextmanager
    async def borrow(self) -> AsyncIterator[psycopg.AsyncConnection[TupleRow]]:
        """A live autocommit connection of this role for the block's statements.

        It goes back for reuse when the block ended and it is idle; a connection the
        block left broken, closed or inside a transaction is closed instead.
        """
        if self._size == 1:
            yield await self.connection()
            return
        async with self._slots:
            conn = None
            while self._idle and conn is None:
                candidate = self._idle.pop()
                if candidate.closed or candidate.broken:
                    await candidate.close()
                else:
                    conn = candidate
            if conn is None:
                conn = await self._connect()
            self._lent.add(conn)
            reusable = False
            try:
                yield conn
                reusable = (
                    not conn.closed
                    and not conn.broken
                    and conn.info.transaction_status == TransactionStatus.IDLE
                )
            finally:
                self._lent.discard(conn)
                if reusable:
                    self._idle.append(conn)
                else:
                    await conn.close()

    async def close(self) -> None:
        """Close every connection of this role."""
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
        idle, self._idle = self._idle, []
        for conn in [*idle, *self._lent]:
            await conn.close()


async def emit_event(db: Database, event: NewEvent) -> uuid.UUID:
    """Append event (a repeat of its idempotency key returns the first event's id)."""
    async with db.borrow() as conn:
        event_id = await emit(conn, event)
    metrics.EVENTS_EMITTED.labels(event.event_type).inc()
    return event_id


# The events of a job's history (see job_history); named parameters stream_id, types,
# job_id, workflow_id.
_HISTORY_OF_JOB: Final = (
    "FROM domain_events WHERE stream_id = %(stream_id)s AND event_type = ANY(%(types)s) "
    "AND (event_data->>'job_id' = %(job_id)s "
    "     OR (event_data->>'job_id' IS NULL AND event_data->>'workflow_id' = %(workflow_id)s))"
)
_HISTORY: Final = "SELECT DISTINCT event_type " + _HISTORY_OF_JOB


def _history_params(plan: StartPlan) -> dict[str, object]:
    return {
        "stream_id": plan.stream_id,
        "types": sorted(STARTED_OR_DONE),
        "job_id": plan.job_id,
        "workflow_id": plan.workflow_id,
    }


async def job_history(db: Database, plan: StartPlan) -> frozenset[str]:
    """The types of the events in the store showing plan's job was started or finished.

    Read from the event store itself, not the projection, so it is right even while the
    projection agent lags behind. The bootstrap's own completed/failed events name only
    the workflow (one per organization), hence the workflow_id branch.
    """
    async with db.borrow() as conn:
        cur = await conn.execute(_HISTORY, _history_params(plan))
        return frozenset(str(row[0]) for row in await cur.fetchall())


# The handoff's one statement (one round trip, one commit): the pending event under the
# id the caller chose, the job's history, and the claim when the pending event is the one
# of that id and the history is empty (the job was never started: decide() would START).
# The claim's emit sees the pending event (a plpgsql function's statements see what the
# transaction wrote before them), so it takes the next stream version.
_HANDOFF: Final = (
    "WITH pending AS (SELECT api.emit_domain_event("
    "  p_event_id => %(pending_id)s, p_event_type => %(pending_type)s,"
    "  p_aggregate_type => %(stream_type)s, p_aggregate_id => %(stream_id)s,"
    "  p_event_data => %(pending_data)s, p_event_metadata => %(pending_metadata)s,"
    "  p_idempotency_key => %(pending_key)s) AS id),"
    " history AS (SELECT coalesce(array_agg(DISTINCT event_type), '{}'::text[]) AS types "
    + _HISTORY_OF_JOB
    + ") SELECT pending.id, history.types,"
    " CASE WHEN pending.id = %(pending_id)s AND cardinality(history.types) = 0"
    "  THEN api.emit_domain_event("
    "   p_stream_id => %(stream_id)s, p_stream_type => %(stream_type)s,"
    "   p_event_type => %(claim_type)s, p_event_data => %(claim_data)s,"
    "   p_event_metadata => %(claim_metadata)s, p_idempotency_key => %(claim_key)s)"
    " END FROM pending, history"
)


@dataclass(frozen=True, slots=True)
class Handoff:
    """What the handoff's statement did: the pending event's id (the first one's on a
    repeat), the job's history, and the claim's id if it claimed the job."""

    pending_id: uuid.UUID
    history: frozenset[str]
    claimed_id: uuid.UUID | None


async def emit_pending_and_claim(
    db: Database, pending: NewEvent, pending_id: uuid.UUID, plan: StartPlan, claimed: NewEvent
) -> Handoff:
    """Append pending under pending_id and, in the same statement, claim its job if it
    has no history (see _HANDOFF). plan and claimed are the plan and claim of the pending
    event of that id; on a repeat that returns another id, nothing is claimed."""
    if pending.stream_id != plan.stream_id or claimed.stream_id != plan.stream_id:
        raise ValueError("pending, plan and claim must be of one stream")
    params = {
        **_history_params(plan),
        "pending_id": pending_id,
        "pending_type": pending.event_type,
        "stream_type": pending.stream_type,
        "pending_data": json_param(pending.event_data),
        "pending_metadata": json_param(pending.event_metadata),
        "pending_key": pending.idempotency_key,
        "claim_type": claimed.event_type,
        "claim_data": json_param(claimed.event_data),
        "claim_metadata": json_param(claimed.event_metadata),
        "claim_key": claimed.idempotency_key,
    }
    async with db.borrow() as conn:
        cur = await conn.execute(_HANDOFF, params)
        row = await cur.fetchone()
    if row is None or not isinstance(row[0], uuid.UUID):
        raise RuntimeError("the handoff's statement returned no pending id")
    metrics.EVENTS_EMITTED.labels(pending.event_type).inc()
    claimed_id = row[2] if isinstance(row[2], uuid.UUID) else None
    if claimed_id is not None:
        metrics.EVENTS_EMITTED.labels(claimed.event_type).inc()
    return Handoff(row[0], frozenset(str(t) for t in row[1] or ()), claimed_id)


_RECORDED_RUN_ID: Final = (
    "SELECT event_metadata->>'run_id' FROM domain_events "
    "WHERE stream_id = %s AND event_type = ANY(%s) AND event_data->>'job_id' = %s "
    "AND event_metadata ? 'run_id' ORDER BY stream_version LIMIT 1"
)


async def recorded_run_id(db: Database, plan: StartPlan) -> str | None:
    """The run id the workflow's events of plan's job carry (its activities record it)."""
    async with db.borrow() as conn:
        cur = await conn.execute(_RECORDED_RUN_ID, (plan.stream_id, sorted(JOB_DONE), plan.job_id))
        row = await cur.fetchone()
    return str(row[0]) if row is not None and row[0] else None


class WorkflowStartClient:
    """The Temporal client side of the starter: starts a plan's bootstrap workflow once (a
    second start returns the first run's id) and reads a workflow's run id.

    Not to be confused with the starter agent (:meth:`AgentRuntime.start_routed
    <pipeline.agents.runtime.AgentRuntime.start_routed>`) nor its pure decisions
    (:mod:`pipeline.agents.starter`), which call it.
    """

    def __init__(
        self,
        address: str,
        namespace: str,
        task_queue: str,
        client: Client | None = None,
        security: TemporalSecurity | None = None,
    ) -> None:
        self._security = security or TemporalSecurity()
        self._address = address
        self._namespace = namespace
        self.task_queue = task_queue
        self._client = client
        self._imported: asyncio.Future[None] | None = None

    async def client(self) -> Client:
        """The Temporal client, connected on first use (Temporal may be down at start-up)."""
        await self._temporalio_imported()
        if self._client is None:
            self._client = await connect_temporal(self._address, self._namespace, self._security)
        return self._client

    async def _temporalio_imported(self) -> None:
        """temporalio imported, once, in a thread; every use in this client waits for it.

        temporalio is not imported with this module: it is about half a second of CPU a
        restarted ``pipeline run`` would otherwise spend before its consumer joins. It is
        imported in a thread (the event loop goes on), and only ever through this one
        future: a second import of the same package from the loop's thread meanwhile
        would see its modules half initialised.
        """
        if self._client is not None:
            return
        if self._imported is None:
            self._imported = asyncio.ensure_future(asyncio.to_thread(_import_temporalio))
        await asyncio.shield(self._imported)

    async def warm_up(self) -> None:
        """Import temporalio and connect while the process waits for its group join.

        A Temporal that is down is not an error here: the first start connects and
        retries as usual.
        """
        try:
            await self.client()
        except Exception as exc:  # connected again on first use, with its retries
            log.info("Temporal not reachable yet (%s); the first start connects", exc)

    async def run_id_of(self, workflow_id: str) -> str | None:
        """The run id of workflow_id's latest execution, None if Temporal does not know it."""
        client = await self.client()  # temporalio imported once it returns
        from temporalio.service import RPCError, RPCStatusCode

        try:
            described = await client.get_workflow_handle(workflow_id).describe(
                rpc_timeout=START_RPC_TIMEOUT
            )
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return None
            raise
        return described.run_id

    async def start(self, plan: StartPlan) -> tuple[str, bool]:
        """Start plan's workflow; returns (run_id, True) or (first run's id, False).

        REJECT_DUPLICATE makes a start after a completed or failed run an error, and
        USE_EXISTING makes a start while a run is open return that run: either way the
        workflow body runs once per organization (DESIGN.md invariant 3).
        """
        client = await self.client()  # temporalio imported once it returns
        from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
        from temporalio.exceptions import WorkflowAlreadyStartedError

        try:
            handle = await client.start_workflow(
                plan.workflow_type,
                plan.workflow_input,
                id=plan.workflow_id,
                task_queue=self.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                rpc_timeout=START_RPC_TIMEOUT,
            )
        except WorkflowAlreadyStartedError as exc:
            run_id = exc.run_id
            if not run_id:
                described = await client.get_workflow_handle(plan.workflow_id).describe()
                run_id = described.run_id
            return run_id, False
        run_id = handle.result_run_id
        if run_id is None:
            run_id = (await handle.describe()).run_id
        return run_id, _started_new_run(handle)


def _started_new_run(handle: object) -> bool:
    """Whether a start made a new run, not USE_EXISTING handing back the open one.

    The server says so in the response's ``started`` field; the SDK keeps the response
    on the handle without a public accessor, so it is read defensively (an SDK without
    it counts every successful start as new, as before).
    """
    response = getattr(handle, "_start_workflow_response", None)
    started = getattr(response, "started", None)
    return started if isinstance(started, bool) else True


def _import_temporalio() -> None:
    import temporalio.client  # noqa: F401  # see WorkflowStartClient.warm_up
