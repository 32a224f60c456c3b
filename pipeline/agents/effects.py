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
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Final, Protocol, TypeAlias, TypeVar

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import TupleRow

from pipeline import metrics
from pipeline.agents.starter import StartPlan
from pipeline.eventstore import EMIT_SQL, NewEvent, emit_params, emitted_id
from pipeline.security import TemporalSecurity, connect_temporal
from replication.retry import Directive, classify

if TYPE_CHECKING:
    from temporalio.client import Client

log = logging.getLogger(__name__)
T = TypeVar("T")
# A statement's parameters, positional or named.
Params: TypeAlias = Sequence[object] | Mapping[str, object]

START_RPC_TIMEOUT: Final = timedelta(seconds=15)
# How long Database.close() waits for a statement in flight on the shared connection.
CLOSE_WAIT_S: Final = 5.0


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
        self._slots = asyncio.Semaphore(size)
        # Bumped by close(): a connection lent before it is closed by its borrower.
        self._closes = 0

    @property
    def dsn(self) -> str:
        """The connection string (for a sibling connection of the same database)."""
        return self._dsn

    @property
    def name(self) -> str:
        """The role's name (its connections' ``application_name`` suffix)."""
        return self._name

    async def fetchone(
        self, query: str, params: Params, *, stream: object = None
    ) -> tuple[object, ...] | None:
        """Run one autocommit statement on a borrowed connection; its first row.

        stream is unused here (see :class:`Statements`)."""
        async with self.borrow() as conn:
            cur = await conn.execute(query, params)
            return await cur.fetchone()

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
            lent_at = self._closes
            reusable = False
            try:
                yield conn
                reusable = (
                    not conn.closed
                    and not conn.broken
                    and conn.info.transaction_status == TransactionStatus.IDLE
                )
            finally:
                if reusable and lent_at == self._closes:
                    self._idle.append(conn)
                else:
                    await conn.close()

    async def close(self) -> None:
        """Close every connection of this role that no block is using.

        A connection is never closed under a statement in flight: psycopg's statement
        then fails ("connection pointer is NULL"), or waits forever on a socket that is
        gone, and a ``pipeline run`` stopped with handlers in flight crashed at exit
        (SIGSEGV). A lent connection is closed by its borrower as its block ends; the
        shared one once psycopg released it (it holds ``conn.lock`` while a statement
        runs), or left to the process's exit if that takes over ``CLOSE_WAIT_S``.
        """
        self._closes += 1
        if self._conn is not None:
            shared, self._conn = self._conn, None
            try:
                await asyncio.wait_for(shared.lock.acquire(), CLOSE_WAIT_S)
            except TimeoutError:
                log.warning(
                    "%s: a statement still ran %.0fs after close(); its connection is left open",
                    self._name,
                    CLOSE_WAIT_S,
                )
            else:
                try:
                    await shared.close()
                finally:
                    shared.lock.release()
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()


class Statements(Protocol):
    """Where a handler's single statements go: a :class:`Database` runs each in its own
    transaction, a :class:`~pipeline.agents.groupcommit.GroupCommit` commits those of
    concurrent handlers together. A statement sent to either must be safe to run twice.
    """

    async def fetchone(
        self, query: str, params: Params, *, stream: object = ...
    ) -> tuple[object, ...] | None:
        """Run query and return its first row; stream: the event stream it appends to."""
        ...


async def emit_event(db: Statements, event: NewEvent) -> uuid.UUID:
    """Append event (a repeat of its idempotency key returns the first event's id)."""
    event_id = emitted_id(await db.fetchone(EMIT_SQL, emit_params(event), stream=event.stream_id))
    metrics.EVENTS_EMITTED.labels(event.event_type).inc()
    return event_id


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
