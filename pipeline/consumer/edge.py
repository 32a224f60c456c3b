"""The consumer edge: the topic's records taken off Faust in batches, routed, acked in order.

Faust delivered each record to each agent as an ``Event`` through a ``Stream``: tens of
microseconds of CPU per record per agent, three agents, so about three times Faust's
ceiling of ~13k records/s before any work was done (docs/benchmarks.md). The edge keeps
what Faust is for here: the app and its lifecycle, the consumer group and its
rebalances, the offsets it commits from the acked records, the flow control that
suspends delivery during a rebalance. It drops the per-record machinery:

- The consumer's fetch loop hands over each fetch whole, as Faust ``Message`` objects,
  into the edge's :class:`~pipeline.consumer.inbox.Inbox` (:mod:`pipeline.consumer.inbox`:
  no per-record task, conductor lock or ``Event``); the edge takes whatever waits there
  (up to ``max_batch``) without a window: quiet traffic pays no wait, busy traffic makes
  large batches by itself. :class:`MessageTopic` is the source topic as Faust's
  conductor subscribes it; should a record ever reach the conductor, its ``decode``
  hands on the ``Message`` without building an ``Event``.
- :class:`ConsumerEdge` routes each record once (:mod:`pipeline.consumer.router`): every
  record to the projection's lane (:mod:`pipeline.consumer.lane`), an initiated or a
  pending event also to the stream dispatcher (:mod:`pipeline.agents.dispatch`; streams
  concurrently, each stream in order). A record is acked once its projection AND its
  handler are done, in partition order (:class:`~pipeline.consumer.batching.AckLedger`),
  so Faust never commits past a record whose effects have not all happened.

A message is tracked as in flight (``Consumer.track_message``, what a ``Stream`` does) as
it is taken, so a rebalance waits for it to be acked, as it waited for the agents. A
message of an earlier consumer generation (fetched before a rebalance) is skipped and
never acked: Faust seeks back to the committed offset after the rebalance and delivers
it again. An ack of a message taken before a rebalance that lands after it is dropped
for the same reason. Shutdown cancels everything in flight, which stays unacked and is
delivered again; every effect is idempotent (DESIGN.md invariant 3).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import faust
from faust.types import Message

from pipeline import metrics
from pipeline.agents.dispatch import StreamDispatcher
from pipeline.agents.headers import header_event_type
from pipeline.agents.routing import Routed, route
from pipeline.agents.runtime import Record
from pipeline.consumer.batching import AckLedger, Ticket
from pipeline.consumer.inbox import Inbox
from pipeline.consumer.lane import ProjectionLane
from pipeline.consumer.router import Effect, effects_for, handler_effect

log = logging.getLogger(__name__)

# How often the edge logs how many records it took in how many batches.
REPORT_EVERY_S: Final = 10.0
# Records routed between two yields to the event loop, so the handler records among the
# first ones of a large batch start before the rest of it is routed.
YIELD_EVERY: Final = 256
# The roles whose consumed counters (pipeline_events_consumed_total{agent=...}) count
# every record: each role looks at each record, whichever it acts on.
ROLES: Final = ("projection", "enqueue", "starter")


class MessageTopic(faust.Topic):
    """The source topic, delivering Faust's ``Message`` itself instead of an ``Event``.

    Faust's topic compiles its schema's decoder into the instance's ``decode`` (bytes to
    an ``Event``); this one sets its own instead: the conductor's per-record step then
    only queues the message.
    """

    def _compile_decode(self) -> None:
        self.decode = _message_itself  # type: ignore[method-assign]  # as Faust sets it


async def _message_itself(message: Message, *, propagate: bool = False) -> Any:
    return message


def _header(name: object, value: Any) -> tuple[str, bytes]:
    return (
        name if type(name) is str else str(name),
        value if type(value) is bytes else bytes(value or b""),
    )


def to_record(message: Message) -> Record:
    """The handlers' view of a consumed message (header values None as empty)."""
    headers = message.headers or ()
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return Record(
        message.topic,
        message.partition,
        message.offset,
        message.key,
        message.value,
        tuple([_header(name, value) for name, value in pairs]),
    )


# The edge's pauses for acks (EdgeLimits.max_unacked) are logged at most this often:
# under a sustained overload it pauses at every batch.
PAUSE_LOG_EVERY_S: Final = 60.0


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    """How much the edge takes and holds: a batch, the projection's queue, the handlers."""

    max_batch: int = 2000
    max_projection_pending: int = 4_000
    max_inbox: int = 4_000
    # Records taken and not acked yet. A record is acked only after every record before
    # it in its partition (batching.AckLedger), so behind one start that waits (Temporal
    # slow or down) every later record of its partition stays in memory, folded or not:
    # at 1,000 events/s a ten-minute Temporal outage would hold 600,000 of them, the
    # handlers' own bound (HANDLER_MAX_WAITING) counting only the bootstraps among
    # them. Past this many the edge takes no more until acks bring it back under, and
    # the records wait in Kafka instead: a held message of 600 bytes takes about 1 KB
    # (tracemalloc), so 20,000 about 20 MB.
    max_unacked: int = 20_000


class ConsumerEdge:
    """Takes the source topic's messages in batches and hands them to their effects."""

    def __init__(
        self,
        app: faust.App,
        topic: MessageTopic,
        *,
        project: Callable[[list[Record]], Awaitable[None]],
        handlers: StreamDispatcher[Routed],
        limits: EdgeLimits = EdgeLimits(),
    ) -> None:
        self._app = app
        # Iterating the topic registers it with the conductor, which subscribes the
        # consumer to it; the consumer's fetch loop then fills the inbox with its records.
        topic.__aiter__()
        self.inbox = Inbox(topic.topics, limits.max_inbox)
        self._project = project
        self._handlers = handlers
        self._limits = limits
        self._running: asyncio.Task[None] | None = None
        self._pause_logged_at = -PAUSE_LOG_EVERY_S

    def _ack(self, message: Message) -> None:
        app = self._app
        consumer = app.consumer
        if message.generation_id != app.consumer_generation_id:
            # Taken before a rebalance: delivered again from the committed offset, so not
            # acked (an ack now could commit past records the new generation has not
            # handled); no longer in flight either, or the next rebalance would wait for it.
            consumer.unacked.discard(message)
            return
        # Faust's Consumer.ack (what Message.ack ends in): marks the offset acked for
        # the commit and takes the message out of the in-flight set.
        message.ack(consumer)

    async def _wait_for_acks(self, ledger: AckLedger[Message], room: asyncio.Event) -> None:
        """Wait until fewer than ``max_unacked`` records are taken and not acked."""
        bound = self._limits.max_unacked
        now = time.monotonic()
        if now - self._pause_logged_at >= PAUSE_LOG_EVERY_S:
            self._pause_logged_at = now
            log.warning(
                "holding %d records not acked yet, behind their partitions' oldest "
                "unfinished record (a workflow start waiting on Temporal?): taking no more "
                "until fewer than %d are",
                ledger.waiting(),
                bound,
            )
        while ledger.waiting() >= bound:
            room.clear()
            await room.wait()

    async def stop(self) -> None:
        """Cancel :meth:`run` and return once it stopped: the projection's lane and every
        handler in flight have ended (cancelled), so none of them is still using a
        database connection when the app closes them (:meth:`AgentRuntime.close
        <pipeline.agents.runtime.AgentRuntime.close>`)."""
        running = self._running
        if running is not None and not running.done():
            running.cancel()
            await asyncio.wait([running])

    async def run(self) -> None:
        """Consume until cancelled (the app's stop, or :meth:`stop`)."""
        self._running = asyncio.current_task()
        app = self._app
        consumer = app.consumer
        counters = [metrics.EVENTS_CONSUMED.labels(role) for role in ROLES]
        ledger: AckLedger[Message] = AckLedger(self._ack)
        report = _Report()
        submit = self._handlers.submit
        max_unacked = self._limits.max_unacked
        room = asyncio.Event()  # set when acks brought the unacked records under the bound

        def settled(tickets: Iterable[Ticket[Message]]) -> None:
            ledger.done(tickets)
            if ledger.waiting() < max_unacked:
                room.set()

        lane: ProjectionLane[Record, Ticket[Message]] = ProjectionLane(
            self._project, self._limits.max_projection_pending, settled
        )
        folding = asyncio.create_task(lane.run(), name="projection-lane")

        async def handled(
            ticket: Ticket[Message], effect: Effect, where: str, error: Exception | None
        ) -> None:
            if error is not None:
                log.error("%s of %s failed; going on", effect.value, where, exc_info=error)
            settled((ticket,))

        try:
            while True:
                if ledger.waiting() >= max_unacked:
                    await self._wait_for_acks(ledger, room)
                taken = await self.inbox.take(self._limits.max_batch)
                generation = app.consumer_generation_id
                messages = [m for m in taken if m.generation_id == generation]
                if not messages:
                    continue
                for counter in counters:
                    counter.inc(len(messages))
                report.add(len(messages), messages[0].timestamp)
                # In flight until acked, so a rebalance waits for them (what Faust's
                # Consumer.track_message does, less its per-message sensor call: the
                # pipeline's figures are its own, on /metrics).
                consumer.unacked.update(messages)
                records: list[Record] = []
                tickets: list[Ticket[Message]] = []
                for n, message in enumerate(messages, 1):
                    if n % YIELD_EVERY == 0:
                        await asyncio.sleep(0)  # the handlers submitted so far start now
                    record = to_record(message)
                    records.append(record)
                    event_type = header_event_type(record.headers)
                    routed = None
                    if event_type is None:  # no usable header: routed by its value
                        routed = route(record)
                        event_type = routed.event_type
                    effects = effects_for(event_type)
                    ticket = ledger.track(message.tp, message, len(effects))
                    tickets.append(ticket)
                    handler = handler_effect(effects)
                    if handler is not None:
                        if routed is None:
                            routed = Routed(record, event_type)
                        done = functools.partial(handled, ticket, handler, record.where)
                        await submit(routed, done)
                await lane.put(records, tickets, records[-1].where)
        finally:
            folding.cancel()
            await asyncio.wait([folding])
            await self._handlers.cancel()


class _Report:
    """Logs, every REPORT_EVERY_S, how many records came in how many batches, and how
    long after its broker timestamp each batch's oldest record was taken."""

    def __init__(self) -> None:
        self.records = self.batches = 0
        self.lags: list[float] = []
        self.since = time.monotonic()

    def add(self, n: int, oldest_timestamp: float | None) -> None:
        self.records += n
        self.batches += 1
        if oldest_timestamp:
            self.lags.append(time.time() - oldest_timestamp)
        now = time.monotonic()
        if now - self.since >= REPORT_EVERY_S:
            lags = sorted(self.lags)
            log.info(
                "consumed %d records in %d batches (mean %.0f) in %.0fs; "
                "broker timestamp -> taken: median %.0f ms, max %.0f ms",
                self.records,
                self.batches,
                self.records / self.batches,
                now - self.since,
                lags[len(lags) // 2] * 1000 if lags else 0.0,
                lags[-1] * 1000 if lags else 0.0,
            )
            self.records = self.batches = 0
            self.lags = []
            self.since = now
