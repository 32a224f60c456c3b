"""Run a batch of records stream by stream: different streams at once, one stream in order.

Order matters only within a stream (DESIGN.md invariant 4: every event of one bootstrap
carries the organization's stream_id, which is the Kafka key), so the records of a batch
are grouped by key, each group is handled in the batch's order, and the groups run
concurrently. A record without a key belongs to no stream and is a group of its own.
The call returns only when every record of the batch has been handled, so the caller
(an agent acking a batch after its loop body returns) never acks a record whose effects
have not happened.

Failures are handled as Faust's one-record-at-a-time loop handles them. There, a handler
that raises crashes the agent; Faust acks the failed record and the restarted agent goes
on with the next one. Here the failed record is likewise not retried, every other record
of the batch is still handled (the records of its own stream too, in order), and then
the first failure in batch order is raised for Faust to log and restart the agent; any
further failures are logged here. (The handlers retry every effect themselves, see
``effects.with_retries``, so a failure that reaches this module is a bug, not an outage.)
Cancellation (shutdown, rebalance) cancels every group and returns once they all stopped.

:meth:`StreamDispatcher.submit` is the same scheduling without the batch boundary, for
the live agents: a batch waits for its slowest handler (a workflow start), and behind it
every later record of every other stream waited too, so at twenty bootstraps a second a
backlog of seconds built up in front of handlers that had nothing to do. ``submit``
queues a record behind the previous record of its stream only, and calls its ``done``
callback (the agent acks the record there) once it was handled, so records are acked
out of order; Faust commits a partition's offsets only up to its first unacked record,
so nothing is committed before its effects happened.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Final, Generic, TypeVar

log = logging.getLogger(__name__)

R = TypeVar("R")

DEFAULT_MAX_IN_FLIGHT: Final = 64

Indexed = tuple[int, R]
Done = Callable[[Exception | None], Awaitable[None]]


def group_by_key(items: Sequence[R], key: Callable[[R], Hashable | None]) -> list[list[Indexed[R]]]:
    """items grouped by key, each with its index in items.

    Each group keeps the items' order; groups come in the order of their first item.
    An item whose key is None forms a group of its own.
    """
    groups: list[list[Indexed[R]]] = []
    by_key: dict[Hashable, list[Indexed[R]]] = {}
    for index, item in enumerate(items):
        k = key(item)
        if k is None:
            groups.append([(index, item)])
            continue
        group = by_key.get(k)
        if group is None:
            group = by_key[k] = []
            groups.append(group)
        group.append((index, item))
    return groups


class StreamDispatcher(Generic[R]):
    """Hands each record of a batch to ``handle``: streams concurrently, each in order.

    At most ``max_in_flight`` handlers run at once, across all the batches of this
    dispatcher, so a batch of many streams does not open as many requests at once
    against PostgreSQL and Temporal.
    """

    def __init__(
        self,
        name: str,
        handle: Callable[[R], Awaitable[None]],
        key: Callable[[R], Hashable | None],
        *,
        wants: Callable[[R], bool] | None = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        self.name = name
        self.max_in_flight = max_in_flight
        self._handle = handle
        self._key = key
        self._wants = wants
        self._slots = asyncio.Semaphore(max_in_flight)
        # submit(): the last task of each stream, and every task not finished yet.
        self._tails: dict[Hashable, asyncio.Task[None]] = {}
        self._running: set[asyncio.Task[None]] = set()

    async def submit(self, item: R, done: Done) -> None:
        """Schedule item after the earlier items of its stream; ``done(error)`` follows it.

        Returns once item is scheduled: at once, or after waiting while ``max_in_flight``
        items are scheduled and not finished (backpressure on the agent's loop). An item
        ``wants`` rejects is done at once. A handler that raises is not retried (its
        handler retries outages itself); ``done`` gets the exception. An item cancelled
        by :meth:`cancel` is never done, so it is never acked.
        """
        if self._wants is not None and not self._wants(item):
            await done(None)
            return
        await self._slots.acquire()
        key = self._key(item)
        before = self._tails.get(key) if key is not None else None
        task = asyncio.create_task(self._after(before, item, done))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        if key is not None:
            self._tails[key] = task
            task.add_done_callback(lambda t: self._forget(key, t))

    def _forget(self, key: Hashable, task: asyncio.Task[None]) -> None:
        if self._tails.get(key) is task:
            del self._tails[key]

    async def _after(self, before: asyncio.Task[None] | None, item: R, done: Done) -> None:
        try:
            if before is not None:
                await asyncio.wait([before])
            error: Exception | None = None
            try:
                await self._handle(item)
            except Exception as exc:  # handed to done, see submit
                error = exc
            await done(error)
        finally:
            self._slots.release()

    async def cancel(self) -> None:
        """Cancel every item submitted and not finished; returns once they all stopped."""
        running = list(self._running)
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running)

    async def join(self) -> None:
        """Wait until every item submitted so far is finished."""
        while self._running:
            await asyncio.wait(list(self._running))

    async def __call__(self, batch: Sequence[R]) -> None:
        """Handle every record of batch; raise the first failure once all are done.

        Records ``wants`` rejects are skipped here, without a task each: most of the
        topic is of no interest to the enqueue and starter agents.
        """
        if self._wants is not None:
            batch = [item for item in batch if self._wants(item)]
            if not batch:
                return
        groups = group_by_key(batch, self._key)
        began = time.monotonic()
        async with asyncio.TaskGroup() as tasks:
            running = [tasks.create_task(self._run_group(group)) for group in groups]
        log.debug(
            "%s: %d records of %d streams handled in %.3fs",
            self.name,
            len(batch),
            len(groups),
            time.monotonic() - began,
        )
        failures = sorted(
            (failure for task in running for failure in task.result()), key=lambda f: f[0]
        )
        if not failures:
            return
        for index, exc in failures[1:]:
            log.error(
                "%s: the handler of record %d of %d failed too",
                self.name,
                index,
                len(batch),
                exc_info=exc,
            )
        raise failures[0][1]

    async def _run_group(self, group: list[Indexed[R]]) -> list[tuple[int, Exception]]:
        failures: list[tuple[int, Exception]] = []
        for index, item in group:
            async with self._slots:
                try:
                    await self._handle(item)
                except Exception as exc:  # reported by __call__, see the module docstring
                    failures.append((index, exc))
        return failures
