"""Start-up and shutdown of ``pipeline run``'s Faust worker.

Before the worker starts, :func:`ensure_topics` creates the topics the agents read and
write; as it starts, :class:`PipelineApp` starts the early tasks (the replication reader)
and :class:`TablelessManager` skips Faust's table nap; once a signal asks it to stop,
:class:`Worker` holds the stop to a deadline and :class:`PipelineApp` does not wait for
the records in flight. The app itself (its agents and pages) is :mod:`pipeline.app`.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

import faust
import faust.app.base
from faust.tables import TableManager
from faust.utils import venusian

from pipeline import gcpolicy
from pipeline.config import Settings
from replication import topics

if TYPE_CHECKING:
    from pipeline.consumer.inbox import Inbox

log = logging.getLogger(__name__)

BackgroundTask = Callable[[], Awaitable[None]]

# After SIGTERM/SIGINT the process exits within this many seconds whatever its
# dependencies do: a graceful stop that hangs (a broker or database that does not answer)
# is cut short by a hard exit. Nothing is lost either way: a record is acknowledged only
# after its effects happened, so what was not acknowledged is delivered again. Below the
# StatefulSet's terminationGracePeriodSeconds (60) and Kubernetes' default (30).
SHUTDOWN_DEADLINE_S: Final = 20.0
EXIT_SHUTDOWN_DEADLINE: Final = 1


def kafka_servers(settings: Settings) -> list[str]:
    """The brokers of ``PIPELINE_KAFKA_BOOTSTRAP_SERVERS``, a comma-separated list."""
    return [s.strip() for s in settings.kafka_bootstrap_servers.split(",") if s.strip()]


async def ensure_topics(settings: Settings) -> None:
    """Create the source and dead-letter topics if missing; refuse a source topic whose
    partition count is not ``PIPELINE_TOPIC_PARTITIONS`` (TopicLayoutError).

    Faust creates only its internal topics, and a consumer subscribed to a missing topic
    is not assigned it until its metadata refreshes, so the topics exist before the
    worker starts. The implementation and its policy are the reader's own
    (:mod:`replication.topics`): unlimited retention, room for large events, replication
    factor from the settings.
    """
    await topics.ensure_topics(
        kafka_servers(settings),
        topics.topic_specs(
            settings.topic,
            settings.dead_letter_topic,
            settings.topic_partitions,
            settings.topic_replication_factor,
        ),
        settings.kafka_security,
    )


class TablelessManager(TableManager):
    """Faust's table manager without its one-second nap at start-up.

    Faust sleeps 1 s before starting table recovery so that tables declared late can
    register; this app declares none (the read models live in PostgreSQL), and the nap
    stood between a restarted process and its first record.
    """

    async def on_start(self) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


class _NoScanMarkers:
    """``faust.app.base``'s ``venusian`` without the markers only autodiscovery reads.

    Faust marks every agent, page and task it declares for venusian's scanner, which it
    runs only for ``autodiscover``; each mark reads the caller's source line through
    :func:`inspect.getframeinfo`, which walks ``sys.modules``: about 0.1 s of CPU for the
    app's 14 declarations, on the path of a restarted ``pipeline run`` (bench/chaos_restart.py).
    """

    Scanner = venusian.Scanner

    @staticmethod
    def attach(*args: object, **kwargs: object) -> None:
        return None


class PipelineApp(faust.App):
    """Faust's app, which does not wait for the records in flight once it is stopping.

    Faust waits until every record taken is acknowledged before it stops its consumer
    (``stream_wait_empty``); a record whose handler retries against an unreachable
    Temporal or PostgreSQL is not, for as long as the outage lasts, so SIGTERM hung.
    Stopping without that wait is safe: a record is acknowledged only once its effects
    happened (pipeline.consumer.batching), so what is in flight is not committed and is delivered
    again, and every effect is idempotent (DESIGN.md invariant 3). A rebalance still
    waits (without that wait Faust stopped fetching after the rebalance, measured).
    """

    #: Started with the app, alongside its consumer (see :meth:`on_first_start`).
    early_tasks: Sequence[BackgroundTask] = ()
    #: Where the consumer's fetch loop delivers the source topic's records, a fetch at a
    #: time (pipeline.consumer.inbox); None: Faust's own per-record delivery.
    inbox: Inbox | None = None

    def __init__(self, id: str, **options: Any) -> None:
        """Faust's app, less two start-up costs a restarted ``pipeline run`` paid.

        No leader topic (``topic_disable_leader``): Faust's leader election is not used
        (the replication slot elects the reader, :mod:`pipeline.runner`), and declaring
        its ``<group>-__assignor-__leader`` topic cost two create-topic round trips
        before the consumer joined. No autodiscovery markers (:class:`_NoScanMarkers`):
        the pipeline's apps never autodiscover, so Faust's venusian markers are skipped
        for every app of the process.
        """
        options.setdefault("topic_disable_leader", True)
        if options.get("autodiscover"):
            raise ValueError("a PipelineApp never autodiscovers: declare its agents")
        faust.app.base.venusian = _NoScanMarkers  # type: ignore[attr-defined,assignment]
        super().__init__(id, **options)

    async def on_first_start(self) -> None:
        """Start the early tasks (the replication reader) as the app starts.

        Faust starts ``app.task`` tasks only once the consumer has joined its group and
        been assigned partitions; the reader has nothing to wait for, and starting it at
        once overlaps its session start with the join after a restart. The tasks are
        the app's futures, cancelled when it stops.
        """
        await super().on_first_start()
        for task in self.early_tasks:
            self.add_future(task())

    async def _consumer_wait_empty(self, consumer: Any, logger: Any) -> None:
        if self.should_stop:
            logger.info("Not waiting for records in flight: they are delivered again")
            return
        await super()._consumer_wait_empty(consumer, logger)


def _exit_now(deadline: float) -> None:
    log.error(
        "still stopping %.0fs after the signal: exiting now; records not acknowledged are "
        "delivered again",
        deadline,
    )
    logging.shutdown()
    os._exit(EXIT_SHUTDOWN_DEADLINE)


class Worker(faust.Worker):
    """Faust's worker, with a deadline on the shutdown a signal starts (see above)."""

    shutdown_deadline: float = SHUTDOWN_DEADLINE_S
    _deadline_timer: threading.Timer | None = None

    def _arm_deadline(self) -> None:
        if self._deadline_timer is None:
            # A thread, not the event loop: the deadline holds even if the loop is stuck.
            timer = threading.Timer(self.shutdown_deadline, _exit_now, (self.shutdown_deadline,))
            timer.daemon = True
            timer.start()
            self._deadline_timer = timer

    async def on_startup_finished(self) -> None:
        """Ready: resume the garbage collection `pipeline run` started without.

        ``pipeline.cli`` pauses the cyclic collector while ``pipeline run`` imports and
        starts (most of a restart's CPU); what start-up built is frozen, never scanned,
        and full collections are rarer than CPython's default (:mod:`pipeline.gcpolicy`).
        """
        await super().on_startup_finished()
        gcpolicy.resume()
        log.info(
            "started: garbage collection on (%d objects frozen, thresholds %s)",
            gc.get_freeze_count(),
            "/".join(map(str, gc.get_threshold())),
        )

    def _on_sigterm(self) -> None:
        self._arm_deadline()
        super()._on_sigterm()

    def _on_sigint(self) -> None:
        self._arm_deadline()
        super()._on_sigint()
