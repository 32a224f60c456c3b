"""Batches of a Faust stream that wait for nothing: whatever has arrived, as soon as it has.

Faust's ``Stream.take_events(max_, within)`` yields a batch when ``max_`` events are
buffered or ``within`` has passed, and it stops buffering while the caller handles a
batch. Sparse traffic then waits the whole window on every record (a bootstrap crosses
two agents, so twice), and under load the next batch starts empty after each one.

:func:`take_ready` batches the other way round, like a socket without Nagle: the first
record wakes the agent at once, and while a batch is being handled the records that
arrive keep buffering (up to ``max_``), so the next batch holds everything that arrived
meanwhile. Quiet traffic pays no wait; busy traffic gets large batches by itself.

An event is acked only after the loop body that received its batch returned normally
(``take_events`` also acks a batch whose body was cancelled or raised). A crash, a
shutdown or a rebalance mid-batch leaves the batch unacked: Faust never commits its
offsets and it is delivered again, never acked before its effects happened. A body that
raises therefore has to deal with the failure itself (see ``pipeline.app``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar, cast

import faust
from faust.types import EventT

E = TypeVar("E")


async def take_ready(
    stream: faust.StreamT[Any], max_: int, *, ack: bool = True
) -> AsyncGenerator[list[EventT[Any]], None]:
    """The stream's events in batches of 1..max_, each yielded as soon as it is non-empty.

    The stream must be an agent's stream (a ``faust.Stream``). Each event of a batch is
    acked when the loop body that received it returns; with ``ack=False`` the caller
    acks each event itself (``stream.ack(event)``), whenever it is done with it.
    """
    if max_ < 1:
        raise ValueError(f"max_ must be >= 1, got {max_}")
    # The buffering processor and passive drain are Stream internals (take_events uses the
    # same ones); an agent is always given a Stream, not just the StreamT interface.
    s = cast("faust.Stream[Any]", stream)
    events: list[EventT[Any]] = []
    arrived = asyncio.Event()  # set while events holds something
    room = asyncio.Event()  # cleared while events holds max_
    room.set()

    async def add_to_buffer(value: Any) -> Any:
        event = s.current_event
        if event is None:  # pragma: no cover - Faust sets it before running processors
            raise RuntimeError("take_ready: processor ran without a current event")
        while not room.is_set():
            await s.wait(room)  # type: ignore[arg-type]  # mode types it as its own Event
        events.append(event)
        arrived.set()
        if len(events) >= max_:
            room.clear()
        return value

    saved_acks = s.enable_acks
    s.enable_acks = False  # acked below, after the batch was handled
    s.add_processor(add_to_buffer)
    s._enable_passive(cast("faust.ChannelT[Any]", aiter(s.channel)))
    try:
        while not s.should_stop:
            await s.wait_for_stopped(arrived)  # type: ignore[arg-type]
            if not events:
                arrived.clear()
                continue
            # One turn of the loop lets records already fetched join this batch.
            await asyncio.sleep(0)
            batch = events[:]
            events.clear()
            arrived.clear()
            room.set()
            yield batch
            if not ack:
                continue
            # Only here, after the loop body returned: a body cancelled mid-batch (shutdown,
            # rebalance) leaves the batch unacked, so its offsets are never committed and
            # the partition's next owner handles it again (every effect is idempotent).
            for event in batch:
                await s.ack(event)
    finally:
        s.enable_acks = saved_acks
        s._processors.remove(add_to_buffer)


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
