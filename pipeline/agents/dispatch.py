"""Hand records to their handler stream by stream: different streams at once, one in order.

Order matters only within a stream (DESIGN.md invariant 4: every event of one bootstrap
carries the organization's stream_id, which is the Kafka key), so
:meth:`StreamDispatcher.submit` queues a record behind the previous record of its stream
only, and different streams run concurrently. A record without a key belongs to no
stream and waits for nothing. A batch that waited for its slowest handler (a workflow
start) held back every later record of every other stream too: at twenty bootstraps a
second a backlog of seconds built up in front of handlers that had nothing to do.

``submit`` calls its ``done`` callback (the agent acks the record there) once the record
was handled, so records are acked out of order; Faust commits a partition's offsets only
up to its first unacked record (:class:`pipeline.consumer.batching.AckLedger`), so nothing is
committed before its effects happened. A handler that raises is not retried (the
handlers retry every effect themselves, see ``effects.with_retries``, so a failure that
reaches this module is a bug, not an outage): ``done`` gets the exception, as Faust's
one-record-at-a-time loop acks the record that crashed an agent. Cancellation
(shutdown, rebalance) cancels every record in flight, which is then never done, so
never acked, and delivered again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Final, Generic, TypeVar

R = TypeVar("R")

DEFAULT_MAX_IN_FLIGHT: Final = 64

Done = Callable[[Exception | None], Awaitable[None]]


class StreamDispatcher(Generic[R]):
    """Hands each record submitted to ``handle``: streams concurrently, each in order.

    At most ``max_in_flight`` records are handled at once, so many streams do not open as
    many requests at once against PostgreSQL and Temporal; ``submit`` waits while
    ``max_waiting`` (default: ``max_in_flight``) are submitted and unfinished. A larger
    ``max_waiting`` lets the caller go on (the edge keeps feeding the projection) while
    handlers wait out an outage, up to that bound.
    """

    def __init__(
        self,
        name: str,
        handle: Callable[[R], Awaitable[None]],
        key: Callable[[R], Hashable | None],
        *,
        wants: Callable[[R], bool] | None = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        max_waiting: int | None = None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        waiting = max_in_flight if max_waiting is None else max_waiting
        if waiting < max_in_flight:
            raise ValueError(f"max_waiting must be >= max_in_flight, got {waiting}")
        self.name = name
        self.max_in_flight = max_in_flight
        self._handle = handle
        self._key = key
        self._wants = wants
        # Submitted and unfinished (submit waits beyond it), and handling at once.
        self._admitted = asyncio.Semaphore(waiting)
        self._slots = asyncio.Semaphore(max_in_flight)
        # The last task of each stream, and every task not finished yet.
        self._tails: dict[Hashable, asyncio.Task[None]] = {}
        self._running: set[asyncio.Task[None]] = set()

    async def submit(self, item: R, done: Done) -> None:
        """Schedule item after the earlier items of its stream; ``done(error)`` follows it.

        Returns once item is scheduled: at once, or after waiting while ``max_waiting``
        items are scheduled and not finished (backpressure on the caller). An item
        ``wants`` rejects is done at once. A handler that raises is not retried (its
        handler retries outages itself); ``done`` gets the exception. An item cancelled
        by :meth:`cancel` is never done, so it is never acked.
        """
        if self._wants is not None and not self._wants(item):
            await done(None)
            return
        await self._admitted.acquire()
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
            async with self._slots:
                try:
                    await self._handle(item)
                except Exception as exc:  # handed to done, see submit
                    error = exc
            await done(error)
        finally:
            self._admitted.release()

    async def cancel(self) -> None:
        """Cancel every item submitted and not finished; returns once they all stopped."""
        running = list(self._running)
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running)
