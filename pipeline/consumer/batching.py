"""Acks in each partition's arrival order, once every effect of a record is done.

Used by the consumer edge (:mod:`pipeline.consumer.edge`): a record is routed to one or
two effects (its projection; an enqueue or a start), effects finish out of order
(different streams run concurrently, the projection folds whole batches), and Faust
commits a partition's offsets from the acked ones without seeing a gap at their head:
with no offset committed yet, acked offsets ``{2}`` commit 3 over unfinished 0 and 1
(``Consumer._new_offset``), and a crash then loses them. So the edge acks through
:class:`AckLedger`: a record is acked once its effects are all done AND every record
before it in its partition is acked, so the acked offsets are always a prefix. A crash
redelivers the finished records behind an unfinished one too, which the idempotent
effects absorb.

It is the edge's per-record bookkeeping, so it is plain counting: a :class:`Ticket` per
record (its count of effects still to happen), one synchronous call per finished batch
(:meth:`AckLedger.done`), no task, closure or coroutine per record. Pure: no Faust, no I/O.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

E = TypeVar("E")


class Ticket(Generic[E]):
    """One tracked record: its event, its effects still to happen, its partition's queue."""

    __slots__ = ("event", "queue", "remaining")

    def __init__(self, event: E, remaining: int, queue: deque[Ticket[E]]) -> None:
        self.event = event
        self.remaining = remaining
        self.queue = queue

    @property
    def settled(self) -> bool:
        """All its effects are done (it is acked once the ones before it are too)."""
        return self.remaining == 0


class AckLedger(Generic[E]):
    """Acks each partition's records in arrival order once all their effects are done."""

    def __init__(self, ack: Callable[[E], object]) -> None:
        self._ack = ack
        self._lanes: dict[Hashable, deque[Ticket[E]]] = {}
        self._tracked = 0

    def track(self, lane: Hashable, event: E, effects: int) -> Ticket[E]:
        """Register ``event`` (in arrival order) with its number of effects."""
        if effects < 1:
            raise ValueError("a record is routed to at least one effect")
        queue = self._lanes.get(lane)
        if queue is None:
            queue = self._lanes[lane] = deque()
        ticket = Ticket(event, effects, queue)
        queue.append(ticket)
        self._tracked += 1
        return ticket

    def done(self, tickets: Iterable[Ticket[E]]) -> None:
        """One effect of each ticket happened; ack every record this completes, in order.

        A ticket counted down past zero is a bug and raises: a miscount would ack a
        record before its effects all happened.
        """
        touched: list[deque[Ticket[E]]] = []
        last: deque[Ticket[E]] | None = None
        for ticket in tickets:
            if ticket.remaining < 1:
                raise RuntimeError("an effect was counted twice for one record")
            ticket.remaining -= 1
            if ticket.remaining == 0 and ticket.queue is not last:
                last = ticket.queue
                touched.append(last)
        ack = self._ack
        for queue in touched:
            while queue and queue[0].remaining == 0:
                self._tracked -= 1
                ack(queue.popleft().event)

    def waiting(self) -> int:
        """Records tracked and not acked yet (settled or not)."""
        return self._tracked
