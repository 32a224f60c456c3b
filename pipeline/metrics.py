"""Prometheus metrics of the pipeline's agents.

Labels are low-cardinality on purpose (an agent name, a reason kind, an outcome): an
event id or an error message as a label value would grow the registry without bound.
The metrics live in the default registry, which ``pipeline run`` serves on
``/metrics`` of the Faust web server (``settings.web_port``).
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Histogram

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
    "(the job's history says it already ran) or failed (retried).",
    ["outcome"],
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
