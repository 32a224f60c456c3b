"""How long Faust's consumer lets the broker hold a fetch: ours is short.

Faust builds its aiokafka consumer with ``fetch_max_wait_ms=1500`` and no setting to
change it. aiokafka keeps one fetch in flight per broker, for the partitions that have
no records buffered at the moment it is sent; a partition whose buffer empties just
after waits for that fetch to come back, and when the partitions in it have nothing new,
that is the whole 1.5 s. Under steady traffic on several partitions this convoy held
records at the agents' door for up to two such waits (figures: docs/benchmarks.md,
"Figures the code used to quote"). A short wait costs an idle consumer a fetch request
every 10 ms per broker: 7.5 % of a core for an idle ``pipeline run`` (docs/benchmarks.md).
So the short wait is used only when it matters: a fetch that leaves a partition out
(records of it still buffered, or paused) waits :data:`FETCH_MAX_WAIT_MS`; a fetch for
every assigned partition of the broker, which any new record answers at once, waits
:data:`IDLE_FETCH_MAX_WAIT_MS` (:func:`wait_by_what_is_left_out`).

:func:`install` makes every Faust worker consumer of this process use
:data:`FETCH_MAX_WAIT_MS`; it patches the Faust transport's consumer class (its thread
builds the aiokafka consumer), since Faust exposes no setting for it.

:data:`PREFETCH_BACKOFF_S` lifts aiokafka's hold on a broker's next fetch while
records of one of its partitions wait to be taken.

The same consumer reads with ``isolation_level=read_committed``: the reader writes in
Kafka transactions (replication.producer), and what a fenced or crashed reader left in
an aborted transaction must never reach an agent. Faust picks read_committed only for
its own exactly-once processing mode, which this project does not use.

Reading transactions exposes three places where Faust's consumer mishandles offsets that
hold no record (commit and abort markers, aborted records) or partitions never
committed; each is corrected here and explained where it is: ``_PromptConsumer._add_gap``,
``_PromptConsumer.getmany`` and :func:`seek_to_committed_or_beginning`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

import aiokafka
from faust.transport.drivers import aiokafka as faust_aiokafka

from pipeline import eventloop
from pipeline.consumer.inbox import drain_in_batches

log = logging.getLogger(__name__)

FETCH_MAX_WAIT_MS: Final = 10
# The broker answers a fetch as soon as one of its partitions has a record to give (the
# fetch's minimum is one byte), so a fetch that covers every partition can wait long.
IDLE_FETCH_MAX_WAIT_MS: Final = 500
# aiokafka sends no fetch to a broker while any of its partitions holds fetched records
# not yet taken, for up to this long after they came (its default: 0.1 s). With one
# broker leading every partition, records of one partition still waiting to be taken
# held back the next fetch of all the others: the edge took records 141-242 ms after
# their broker timestamp (median) while a plain read_committed consumer of the same
# topic saw them after 9 ms. A partition with records waiting is still not fetched again
# (so memory stays bounded by one fetch per partition); the others are, at once.
PREFETCH_BACKOFF_S: Final = 0.0


async def seek_to_committed_or_beginning(consumer: aiokafka.AIOKafkaConsumer) -> Mapping[Any, Any]:
    """Seek every assigned partition to its committed offset, and one the group never
    committed to its beginning (what ``auto_offset_reset=earliest`` starts it at).

    ``AIOKafkaConsumer.seek_to_committed`` leaves a partition without a committed offset
    where it is. Faust calls it to drop what was fetched before a rebalance (records of
    the old generation, or fetched while the flow was stopped, are discarded, not
    delivered); a partition the group never committed kept its position past the
    discarded records and they were never delivered: after a replica died before its
    first commit on a partition, the survivor took the partition over and consumed
    nothing of it (test_takeover, 2 of 6 runs). Returns what ``seek_to_committed`` does.
    """
    committed: Mapping[Any, Any] = await consumer.seek_to_committed()
    never = [tp for tp, offset in committed.items() if not offset]
    if never:
        await consumer.seek_to_beginning(*never)
    return committed


async def add_gap(consumer: Any, tp: Any, offset_from: int, offset_to: int) -> None:
    """Faust's ``Consumer._add_gap`` (offsets ``offset_from..offset_to`` hold no record),
    without rebuilding the partition's gap tree each time.

    Faust adds the interval, then calls ``IntervalTree.merge_overlaps()``, which sorts and
    rebuilds the whole tree: O(n log n) per gap, n the gaps not yet committed past. With
    the reader's transactions every transaction leaves a marker, so a partition holds a
    gap per transaction between its committed offset and its fetch position. When the
    handlers fell behind (thousands of records fetched, not yet acked), py-spy put 40 %
    of ``pipeline run``'s samples in ``merge_overlaps``, and the process fell further
    behind. The fetch loop adds gaps in offset order, so a new one overlaps none already
    there unless the partition was fetched again from an earlier offset; only then is it
    merged (the tree must hold no overlapping intervals: ``Consumer._new_offset`` would
    count their offsets twice). Otherwise it is inserted alone, O(log n). The offsets the
    tree covers are the same either way.
    """
    committed = consumer._committed_offset[tp]
    gap_for_tp = consumer._gap[tp]
    if committed is not None:
        offset_from = max(offset_from, committed + 1)
    if offset_from > offset_to:
        return
    # intervaltree intervals exclude the end. In offset order the new gap starts at or
    # past the tree's end (O(log n)); only otherwise is the range searched, which
    # intervaltree does by a scan of every boundary.
    overlapping = bool(gap_for_tp) and offset_from < gap_for_tp.end()
    if overlapping:
        overlapping = gap_for_tp.overlaps(offset_from, offset_to + 1)
    gap_for_tp.addi(offset_from, offset_to + 1)
    if overlapping:
        gap_for_tp.merge_overlaps()
    # Faust's yield: other coroutines (health checks) run between gaps.
    await asyncio.sleep(0)


def fetch_wait_ms(buffered: int, paused: int) -> int:
    """How long the next fetch may wait: short while a partition is left out of it
    (``buffered`` partitions hold records not taken yet, ``paused`` are paused), long
    when it covers them all (see the module's docstring)."""
    return FETCH_MAX_WAIT_MS if buffered or paused else IDLE_FETCH_MAX_WAIT_MS


def wait_by_what_is_left_out(fetcher: Any) -> None:
    """Make aiokafka's fetcher choose each fetch's wait by :func:`fetch_wait_ms`.

    aiokafka builds its fetch requests in ``Fetcher._get_actions_per_node`` from the
    fetcher's one ``_fetch_max_wait_ms``; it is set just before each build, from the
    partitions with records buffered (``_records``) and those paused.
    """
    build = fetcher._get_actions_per_node

    def get_actions_per_node(assignment: Any) -> Any:
        paused = sum(1 for tp in assignment.tps if assignment.state_value(tp).paused)
        fetcher._fetch_max_wait_ms = fetch_wait_ms(len(fetcher._records), paused)
        return build(assignment)

    fetcher._get_actions_per_node = get_actions_per_node


class _PromptConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    async def on_start(self) -> None:
        await super().on_start()
        # Built by AIOKafkaConsumer.start(), with no setting for it (see PREFETCH_BACKOFF_S).
        fetcher = self._ensure_consumer()._fetcher
        fetcher._prefetch_backoff = PREFETCH_BACKOFF_S
        wait_by_what_is_left_out(fetcher)

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Read by AIOKafkaConsumer.start() when it builds its fetcher (not started yet).
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        consumer._isolation_level = "read_committed"
        return consumer

    async def seek_to_committed(self) -> Mapping[Any, Any]:
        """Faust's seek to the committed offsets, a never-committed partition to its
        beginning (:func:`seek_to_committed_or_beginning`)."""
        result: Mapping[Any, Any] = await self.call_thread(
            seek_to_committed_or_beginning, self._ensure_consumer()
        )
        return result


class _PromptConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        # Faust runs aiokafka's consumer in a thread with a loop of its own, which it makes
        # with asyncio.new_event_loop(): asyncio's, whatever loop the app runs on. That
        # thread does every fetch, so it gets the app's kind (pipeline.eventloop).
        thread_loop = eventloop.new_loop()
        log.debug("Kafka consumer thread: event loop %s", type(thread_loop).__module__)
        return _PromptConsumerThread(
            self, loop=self.loop, thread_loop=thread_loop, beacon=self.beacon
        )

    async def _drain_messages(self, fetcher: Any) -> None:
        """Faust's fetch loop, or, when the app has an inbox (``pipeline run``), the same
        loop delivering a fetch at a time into it (:mod:`pipeline.consumer.inbox`)."""
        inbox = getattr(self.app, "inbox", None)
        if inbox is None:
            await super()._drain_messages(fetcher)
            return
        await drain_in_batches(self, fetcher, inbox)

    async def _add_gap(self, tp: Any, offset_from: int, offset_to: int) -> None:
        """Faust's gap, without the offset of the record that revealed it.

        Offsets with no record (a transaction's commit marker, an aborted transaction)
        are a gap that Faust counts as acked. When a record arrives after such offsets,
        Faust records the gap up to and INCLUDING that record's own offset: the record is
        then committed before it is acked (a crash loses it), and once it is acked its
        offset is in the acked list twice, which ends ``consecutive_numbers``' run there,
        so each commit moved past one gap only. With the reader's transactions (a marker
        after every transaction) the group's offsets crept forward by one transaction per
        commit interval and a restart redelivered minutes of records.
        """
        await add_gap(self, tp, offset_from, offset_to - 1)

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[Any, Any]]:  # noqa: ASYNC109  # Faust's signature
        """Faust's records, with the gap Faust misses after a record at offset 0.

        Faust's fetch loop records a gap only ``if gap > 1 and r_offset``, with r_offset
        the offset of the partition's last record read: when that record is at offset 0,
        the gap is silently skipped. After a SIGKILL of the reader this is the usual
        layout of a new topic's partition: 0 the first record, 1 its transaction's
        commit marker, then the dead reader's aborted records and the abort marker the
        new reader's fencing wrote, then the new records. Without the gap, 0 is
        committed (offset 1) and every later record is ``more than one offset past the
        committed one``, which ``Consumer._new_offset`` never commits: the group's
        offset stayed at 1 for good, and every restart redelivered the whole partition.
        """
        async for tp, message in super().getmany(timeout):
            await self.fill_gap_after_offset_zero(tp, message.offset, message.topic)
            yield tp, message

    async def fill_gap_after_offset_zero(self, tp: Any, offset: int, topic: str) -> None:
        """Record the gap before ``offset`` when the partition's last record read was
        offset 0 (the case Faust's own check skips, see :meth:`getmany`)."""
        if offset > 1 and self._read_offset[tp] == 0 and self.app.topics.acks_enabled_for(topic):
            await self._add_gap(tp, 1, offset)


def install() -> None:
    """Make Faust's Kafka transport build consumers with the short fetch wait."""
    faust_aiokafka.Transport.Consumer = _PromptConsumer
