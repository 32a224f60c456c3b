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
from collections.abc import AsyncGenerator
from typing import Any, cast

import faust
from faust.types import EventT


async def take_ready(
    stream: faust.StreamT[Any], max_: int
) -> AsyncGenerator[list[EventT[Any]], None]:
    """The stream's events in batches of 1..max_, each yielded as soon as it is non-empty.

    The stream must be an agent's stream (a ``faust.Stream``); Faust acks each event of a
    batch when the loop body that received it returns.
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
            # Only here, after the loop body returned: a body cancelled mid-batch (shutdown,
            # rebalance) leaves the batch unacked, so its offsets are never committed and
            # the partition's next owner handles it again (every effect is idempotent).
            for event in batch:
                await s.ack(event)
    finally:
        s.enable_acks = saved_acks
        s._processors.remove(add_to_buffer)
