"""From Faust's fetch loop to the consumer edge, a fetched batch at a time.

Faust's consumer hands each fetched record to its conductor one at a time: per record,
``Consumer._drain_messages`` awaits ``wait_first(callback(message), suspend_flow.wait())``
(two tasks), and the conductor takes the flow-control lock, builds an ``Event`` and
queues it for a stream. That per-record machinery capped a bare Faust agent near 13k
records/s here at ~80 µs of CPU per record (docs/benchmarks.md), before any work.

:func:`drain_in_batches` replaces that loop for a consumer whose app has an
:class:`Inbox`: it takes each fetch as Faust does (``_wait_next_records``: flow control,
the active partitions, the seek back to the committed offsets after a rebalance), keeps
Faust's bookkeeping of read offsets and gaps exactly as its loop does (with the
corrections of :mod:`pipeline.consumer.fetching`), turns the records into Faust
``Message`` objects (their acks are what Faust commits from) and puts the whole batch
into the inbox at once. Records of any other topic still go through Faust's conductor.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable
from typing import Any

from faust.types import Message

log = logging.getLogger(__name__)


class Inbox:
    """A bounded hand-over of messages: the fetch loop puts batches, the edge takes them.

    ``put`` waits while ``max_records`` messages are waiting (backpressure: the fetch
    loop stops fetching), ``take`` waits for the first message and returns what waits,
    up to ``max_batch``, at once: quiet traffic pays no wait, busy traffic makes large
    batches by itself.
    """

    def __init__(self, topics: Iterable[str], max_records: int = 20_000) -> None:
        if max_records < 1:
            raise ValueError(f"max_records must be >= 1, got {max_records}")
        self.topics = frozenset(topics)
        self._max_records = max_records
        self._messages: deque[Message] = deque()
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    def __len__(self) -> int:
        return len(self._messages)

    async def put(self, messages: list[Message]) -> None:
        """Add a fetched batch, once fewer than ``max_records`` messages wait."""
        while len(self._messages) >= self._max_records:
            self._room.clear()
            await self._room.wait()
        self._messages.extend(messages)
        if self._messages:
            self._arrived.set()

    async def take(self, max_batch: int) -> list[Message]:
        """The waiting messages, 1..max_batch of them, as soon as there is one."""
        while not self._messages:
            self._arrived.clear()
            await self._arrived.wait()
        messages = self._messages
        if len(messages) <= max_batch:
            batch = list(messages)
            messages.clear()
        else:
            batch = [messages.popleft() for _ in range(max_batch)]
        if len(messages) < self._max_records:
            self._room.set()
        return batch


async def drain_in_batches(consumer: Any, fetcher: Any, inbox: Inbox) -> None:
    """Faust's ``Consumer._drain_messages``, delivering a fetch at a time into ``inbox``.

    ``consumer`` is Faust's (aiokafka transport) consumer, ``fetcher`` its Fetcher
    service, whose stop ends the loop. Error handling is Faust's: a stopped broker or a
    cancellation while the app stops ends the loop quietly, anything else is re-raised.
    """
    app = consumer.app
    read_offset = consumer._read_offset
    to_message = consumer._to_message
    acks_enabled_for = app.topics.acks_enabled_for
    commit_every = consumer._commit_every
    consumer_should_stop = consumer._stopped.is_set
    fetcher_should_stop = fetcher._stopped.is_set
    callback = consumer.callback
    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            records, active = await consumer._wait_next_records(1.0)
            await asyncio.sleep(0)  # as Faust: a busy fetch must not starve the loop
            if not records or consumer.should_stop:
                continue
            if not consumer.flow_active:
                # Faust's getmany: fetched while the flow was stopped (a rebalance).
                # Dropped: seek back to the committed offsets, they are fetched again.
                try:
                    await consumer.perform_seek()
                except Exception as exc:
                    log.warning("seek while the flow was stopped failed: %r", exc)
                continue
            batch: list[Message] = []
            others: list[Message] = []
            for tp, tp_records in records.items():
                if (
                    active is not None
                    and tp not in active
                    and tp not in consumer._buffered_partitions
                ):
                    continue
                app.monitor.track_tp_end_offset(tp, consumer.highwater(tp))
                acks = acks_enabled_for(tp.topic)
                out = batch if tp.topic in inbox.topics else others
                last = read_offset[tp]
                for record in tp_records:
                    offset = record.offset
                    if last is not None and offset < last:
                        continue  # read already (Faust drops it too)
                    if acks and last is not None and offset - last > 1:
                        # Offsets without a record (transaction markers, aborted
                        # records) before this one: counted as acked
                        # (fetching._PromptConsumer._add_gap, and the gap after offset 0
                        # that Faust's own loop misses).
                        await consumer._add_gap(tp, last + 1, offset)
                    out.append(to_message(tp, record))
                    last = offset
                read_offset[tp] = last
            if commit_every is not None and consumer._n_acked >= commit_every:
                consumer._n_acked = 0
                await consumer.commit()
            for message in others:
                await callback(message)
            if batch:
                await inbox.put(batch)
    except consumer.consumer_stopped_errors:
        if app.should_stop:
            log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if app.should_stop:
            log.info("Consumer shutting down for user cancel.")
            return
        raise
