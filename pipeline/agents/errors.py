"""Errors of the agents package."""

from __future__ import annotations

from pipeline.errors import PipelineError
from replication.errors import TopicLayoutError

__all__ = ["AgentError", "RecordRejected", "TopicLayoutError"]


class AgentError(PipelineError):
    """Base of the errors the agents raise on purpose."""


class RecordRejected(AgentError):
    """A Kafka record that cannot be processed: it goes to the dead-letter topic.

    ``kind`` is a short, fixed word (a metric label and a DLQ header); ``detail`` says
    what exactly is wrong, for the operator reading the dead-letter record.
    """

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(kind, detail)
        self.kind = kind
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"
