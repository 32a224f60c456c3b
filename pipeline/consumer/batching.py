"""Acks in each partition's arrival order, whatever order the records finish in.

Used by the consumer edge (:mod:`pipeline.consumer.edge`): a record is acked once every
effect it was routed to is done, and records finish out of order (different streams run
concurrently), so their acks are put back in partition order here before Faust sees them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

E = TypeVar("E")


class InOrderAcks(Generic[E]):
    """Acks each partition's events in the order they arrived, whatever order they finish in.

    Faust commits a partition's offsets from the acked ones, and it does not see a gap
    at the head of them: with no offset committed yet, acked offsets ``{2}`` commit 3
    over unfinished 0 and 1 (``Consumer._new_offset``), and a crash then loses them. So
    an agent whose records finish out of order (``StreamDispatcher.submit``) acks
    through this: a finished event is acked once every event before it in its
    partition is, so the acked offsets are always a prefix. A crash redelivers the
    finished events behind an unfinished one too, which the idempotent effects absorb.
    """

    def __init__(self, ack: Callable[[E], Awaitable[object]]) -> None:
        self._ack = ack
        self._lanes: dict[Hashable, deque[list[Any]]] = {}

    def track(self, lane: Hashable, event: E) -> Callable[[], Awaitable[None]]:
        """Register event (in arrival order); returns the callback that says it finished."""
        entry: list[Any] = [event, False]
        queue = self._lanes.setdefault(lane, deque())
        queue.append(entry)

        async def finished() -> None:
            entry[1] = True
            while queue and queue[0][1]:
                head, _ = queue.popleft()
                await self._ack(head)

        return finished

    def waiting(self) -> int:
        """Events tracked and not acked yet (finished or not)."""
        return sum(len(queue) for queue in self._lanes.values())
