"""Group commit: the single statements of concurrent handlers, sent together.

Every start used to make two commits of its own: the handoff's statement (the pending
event and its claim) and then ``workflow_started``. Each commit is a WAL flush in
PostgreSQL, a transaction the reader decodes, and a Kafka transaction the reader may
open for it; at a hundred starts a second those per-commit costs, spread over four
processes, took CPU from Temporal's server on a small machine (docs/benchmarks.md).

:class:`GroupCommit` sends a statement at once when none of its role is in flight, as
before: no timer, nothing waits that would not have waited anyway. Statements that
arrive while a group is in flight wait for it and then go together as the next group:
one round trip and one commit (:func:`pipeline.roundtrip.one_transaction`).

A group is one transaction, so a statement that fails undoes the others. The group is
then sent again one statement at a time, each in its own transaction, and each caller
gets its own statement's row or error (the handlers retry errors with
:func:`~pipeline.agents.effects.with_retries`, as before). So every statement sent here
must be safe to run twice: the event store's keyed emits and the handoff's statement
are (a repeat returns the first event's id and appends nothing).

A group waits at most ``LOCK_TIMEOUT_MS`` for a lock. A stream whose lock another
transaction holds (a long transaction in psql, a stuck activity) would otherwise hold
up every statement of every stream behind it: the first version of this module did,
and ``tests/integration/test_group_commit.py`` caught it. Past the timeout the group's
statements go one by one, off the flusher (each stream's in order, the streams side by
side, without a timeout), so only the locked stream's statements wait, as they did
before group commit.

The event store serialises appends with a per-stream advisory lock held to the commit,
so a group holds the locks of all its streams until it commits. Each group takes them
in stream order (it is sorted by stream, arrival order kept within a stream), so the
groups of two roles in flight at once cannot deadlock each other.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, TypeAlias

from pipeline import metrics
from pipeline.agents.effects import CLOSE_WAIT_S, Database, Params
from pipeline.roundtrip import one_transaction

log = logging.getLogger(__name__)

Row: TypeAlias = tuple[object, ...]

# At most this many statements in one group (one transaction); the rest go in the next.
MAX_GROUP: Final = 64
# How long a group waits for a lock (a stream's advisory lock or a key another
# transaction is inserting) before its statements go one by one instead: a stream whose
# lock is held must not hold up the statements of every other stream behind it.
LOCK_TIMEOUT_MS: Final = 200
# For the group's transaction only (``SET LOCAL`` would warn in an implicit one).
_LOCK_TIMEOUT: Final = (
    "SELECT set_config('lock_timeout', %s, true)",
    (f"{LOCK_TIMEOUT_MS}ms",),
)


@dataclass(slots=True)
class _Statement:
    query: str
    params: Params
    # The stream whose advisory lock the statement takes (the group's order).
    stream: str
    future: asyncio.Future[Row | None]


class GroupCommit:
    """Single statements of one role, each returning its first row, committed in groups.

    One group is in flight at a time; it borrows one of ``db``'s connections. Statements
    of one stream run in the order given, within a group and across the groups of
    callers that wait for each result before the next (as the handlers do).
    """

    def __init__(self, db: Database, *, max_group: int = MAX_GROUP) -> None:
        if max_group < 1:
            raise ValueError(f"max_group must be >= 1, got {max_group}")
        self._db = db
        self._max_group = max_group
        self._queue: list[_Statement] = []
        self._flusher: asyncio.Task[None] | None = None
        # Statements sent one by one after their group failed (see _send).
        self._alone_tasks: set[asyncio.Task[None]] = set()

    @property
    def name(self) -> str:
        """The role's name (its connections' ``application_name`` suffix)."""
        return self._db.name

    async def fetchone(self, query: str, params: Params, *, stream: object = None) -> Row | None:
        """Run query (one statement, safe to run twice) and return its first row.

        stream names the event stream whose lock the statement takes (the groups' order).
        """
        future: asyncio.Future[Row | None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Statement(query, params, str(stream), future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name=f"group-commit-{self.name}")
        return await future

    async def close(self) -> None:
        """Stop sending: statements still waiting are cancelled; those in flight are
        given up to ``CLOSE_WAIT_S`` to finish (a group's statements then commit or not,
        as one), then cancelled."""
        waiting, self._queue = self._queue, []
        for statement in waiting:
            statement.future.cancel()
        tasks = set(self._alone_tasks)
        if self._flusher is not None:
            tasks.add(self._flusher)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=CLOSE_WAIT_S)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _flush(self) -> None:
        group: list[_Statement] = []
        try:
            while self._queue:
                group = self._queue[: self._max_group]
                del self._queue[: self._max_group]
                # A caller cancelled while it waited no longer wants its statement run.
                group = [s for s in group if not s.future.done()]
                if group:
                    await self._send(group)
                group = []
        except BaseException as exc:
            # A bug here (or the task cancelled) must not leave callers waiting forever.
            for statement in group + self._queue:
                if not statement.future.done():
                    if isinstance(exc, asyncio.CancelledError):
                        statement.future.cancel()
                    else:
                        statement.future.set_exception(exc)
            self._queue = []
            raise
        finally:
            if self._flusher is asyncio.current_task():
                self._flusher = None

    async def _send(self, group: list[_Statement]) -> None:
        metrics.GROUP_COMMIT_STATEMENTS.labels(self.name).observe(len(group))
        group.sort(key=lambda s: s.stream)  # stable: a stream's statements keep their order
        try:
            rows = await self._together(group)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # A statement failed, or waited past LOCK_TIMEOUT for a lock (another
            # transaction on its stream): each goes again alone, off this task, so its
            # caller gets its own error and a stream that waits holds up no other.
            log.debug(
                "%s: a group of %d statements failed (%s: %s); sending them one by one",
                self.name,
                len(group),
                type(exc).__name__,
                exc,
            )
            self._send_alone(group)
            return
        for statement, row in zip(group, rows, strict=True):
            _resolve(statement, row)

    async def _together(self, group: Sequence[_Statement]) -> list[Row | None]:
        async with self._db.borrow() as conn:
            rows = await one_transaction(
                conn, [_LOCK_TIMEOUT, *((s.query, s.params) for s in group)]
            )
        return rows[1:]

    def _send_alone(self, group: Sequence[_Statement]) -> None:
        by_stream: dict[str, list[_Statement]] = {}
        for statement in group:
            by_stream.setdefault(statement.stream, []).append(statement)
        for statements in by_stream.values():
            task = asyncio.create_task(self._alone(statements))
            self._alone_tasks.add(task)
            task.add_done_callback(self._alone_tasks.discard)

    async def _alone(self, statements: Sequence[_Statement]) -> None:
        """One stream's statements, each in its own transaction, in order, with no lock
        timeout: a stream whose lock another transaction holds waits for it, as the
        statements did before group commit."""
        for statement in statements:
            if statement.future.done():
                continue
            try:
                row = await self._db.fetchone(statement.query, statement.params)
            except asyncio.CancelledError:
                statement.future.cancel()
                raise
            except Exception as exc:
                if not statement.future.done():
                    statement.future.set_exception(exc)
            else:
                _resolve(statement, row)


def _resolve(statement: _Statement, row: Row | None) -> None:
    if not statement.future.done():
        statement.future.set_result(row)
