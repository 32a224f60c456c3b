"""The projection's lane: folds what the edge hands it, in order, merging what queued.

The edge does not wait for the projection: a batch's handlers (enqueue, start) are
submitted as soon as it is routed, so a workflow start never queues behind the
projection of earlier records, and while one fold runs the next batches queue up and are
folded together, in one larger transaction (the projection's cost per transaction is
spread over more records the busier the topic is). ``put`` waits while ``max_pending``
records are queued or being folded: backpressure on the edge, so on Faust's fetching.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

R = TypeVar("R")
T = TypeVar("T")


class ProjectionLane(Generic[R, T]):
    """Folds queued batches one transaction at a time; then ``folded`` gets the batches'
    tickets (:class:`~pipeline.consumer.batching.AckLedger`: each record's projection done).

    A fold that raises is a bug for that batch (the projection retries every outage and
    dead-letters a bad record itself): it is logged and its records count as projected,
    as Faust acks the record that crashed an agent, instead of holding every partition
    back for good.
    """

    def __init__(
        self,
        project: Callable[[list[R]], Awaitable[None]],
        max_pending: int,
        folded: Callable[[list[T]], None],
    ) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self._project = project
        self._max_pending = max_pending
        self._folded = folded
        self._queue: list[tuple[list[R], list[T], str]] = []
        self._pending = 0
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    @property
    def pending(self) -> int:
        """Records queued or being folded."""
        return self._pending

    async def put(self, records: list[R], tickets: list[T], where: str) -> None:
        """Queue a routed batch (``where``: its last record, for the log)."""
        while self._pending >= self._max_pending:
            self._room.clear()
            await self._room.wait()
        self._queue.append((records, tickets, where))
        self._pending += len(records)
        self._wake.set()

    async def run(self) -> None:
        """Fold queued batches until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            queued, self._queue = self._queue, []
            if not queued:
                continue
            records = [r for batch, _, _ in queued for r in batch]
            try:
                await self._project(records)
            except Exception:
                log.exception(
                    "projection of a batch of %d ending at %s failed; going on",
                    len(records),
                    queued[-1][2],
                )
            self._folded([t for _, tickets, _ in queued for t in tickets])
            self._pending -= len(records)
            self._room.set()
