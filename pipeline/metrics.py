"""Prometheus metrics of the pipeline's agents.

Labels are low-cardinality on purpose (an agent name, a reason kind, an outcome): an
event id or an error message as a label value would grow the registry without bound.
The metrics live in the default registry, which ``pipeline run`` serves on
``/metrics`` of the Faust web server (``settings.web_port``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Final

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

EVENTS_CONSUMED: Final = Counter(
    "pipeline_events_consumed",
    "Kafka records read from the domain-events topic, per agent.",
    ["agent"],
)
EVENTS_APPLIED: Final = Counter(
    "pipeline_events_applied",
    "Events folded into a projection (events at or before a row's position excluded).",
    ["projection"],
)
EVENTS_DEAD_LETTERED: Final = Counter(
    "pipeline_events_dead_lettered",
    "Records sent to the dead-letter topic, by kind of reason.",
    ["reason"],
)
EVENTS_EMITTED: Final = Counter(
    "pipeline_events_emitted",
    "Events the agents appended to the event store (repeats included: they are no-ops).",
    ["event_type"],
)
WORKFLOW_STARTS: Final = Counter(
    "pipeline_workflow_starts",
    "Temporal workflow start attempts by outcome: started, already_started, skipped "
    "(the job's history says it already ran), failed (retried) or rejected (the job's "
    "input cannot start the workflow: recorded as workflow.queue.failed).",
    ["outcome"],
)
GROUP_COMMIT_STATEMENTS: Final = Histogram(
    "pipeline_group_commit_statements",
    "Statements per group commit of the handlers' emits (pipeline.agents.groupcommit), per "
    "role: 1 when nothing else was waiting.",
    ["role"],
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
COMMIT_TO_START_SECONDS: Final = Histogram(
    "pipeline_commit_to_workflow_start_seconds",
    "Time from the commit of the consumed event (commit_ts header) to the moment the "
    "workflow start returned: organization.bootstrap.initiated when the enqueue agent "
    "starts the job itself (the handoff), workflow.queue.pending when the starter agent does.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
AGENT_RETRIES: Final = Counter(
    "pipeline_agent_retries",
    "Retries of an agent's effect after a failure (database or Temporal unreachable).",
    ["agent"],
)


class _ScrapeTimeCollector:
    """Metrics read from a live object at scrape time; the object is set when it exists."""

    def __init__(self) -> None:
        self.source: Callable[[], Any] | None = None

    def describe(self) -> Iterator[Metric]:
        return iter(())  # collected lazily: no samples at registration time

    def _object(self) -> Any:
        try:
            return self.source() if self.source is not None else None
        except Exception:  # a half-started app: no samples this scrape
            return None


class _ConsumerLag(_ScrapeTimeCollector):
    """``pipeline_consumer_lag_records{topic,partition}``: end offset minus committed offset
    of each partition this process's agents are assigned (the Faust consumer's own view)."""

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "pipeline_consumer_lag_records",
            "Records not yet committed by this process's agents, per assigned partition "
            "(end offset minus committed offset).",
            labels=["topic", "partition"],
        )
        consumer = self._object()
        if consumer is not None:
            committed = getattr(consumer, "_committed_offset", {})
            for tp in sorted(consumer.assignment()):
                high = consumer.highwater(tp)
                if high is None:
                    continue  # not fetched yet
                done = committed.get(tp) or 0
                family.add_metric([tp.topic, str(tp.partition)], max(0, int(high) - int(done)))
        yield family


class _ReaderCounters(_ScrapeTimeCollector):
    """The reader's running counts as counters (``..._total``), read from its stats."""

    def collect(self) -> Iterator[Metric]:
        stats = self._object()
        if stats is None:
            return
        yield CounterMetricFamily(
            "pipeline_reader_events_read",
            "Events read from the WAL by this process.",
            value=float(stats.events_read),
        )
        yield CounterMetricFamily(
            "pipeline_reader_events_produced",
            "Events acknowledged by Kafka for this process.",
            value=float(stats.events_acked),
        )


CONSUMER_LAG: Final = _ConsumerLag()
READER_COUNTERS: Final = _ReaderCounters()
REGISTRY.register(CONSUMER_LAG)
REGISTRY.register(READER_COUNTERS)


def export_consumer_lag(consumer: Callable[[], Any]) -> None:
    """Serve ``pipeline_consumer_lag_records`` from consumer() (the Faust app's consumer)."""
    CONSUMER_LAG.source = consumer


def export_reader_counters(stats: Callable[[], Any]) -> None:
    """Serve the reader's events read / produced as ``..._total`` counters."""
    READER_COUNTERS.source = stats
