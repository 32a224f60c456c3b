"""One consumer stream, routed inside: which effects each record needs, and its ack when
all of them happened.

Faust's agents each received every record of the topic, at a cost per record per agent
(docs/benchmarks.md), so the pipeline takes the topic's records once, at the consumer
edge (:mod:`pipeline.consumer.edge`), and routes each record here:

- every record goes to the projection fold (which also dead-letters what is bad);
- an ``organization.bootstrap.initiated`` also goes to the enqueue handler;
- a ``workflow.queue.pending`` also goes to the starter handler.

A record is acked only once every effect it was routed to is done, and acks go out in
partition order (:class:`pipeline.consumer.batching.AckLedger`, which counts a record's
effects), so Faust never commits past a record
whose projection, enqueue or start has not happened: a crash or rebalance mid-batch
redelivers it, and the idempotent effects absorb the repeat. Pure: no Faust, no I/O.
"""

from __future__ import annotations

from enum import Enum
from typing import Final

from pipeline import events as ev


class Effect(Enum):
    """What a record's routing asks for."""

    PROJECT = "project"
    ENQUEUE = "enqueue"
    START = "start"


_BY_TYPE: Final[dict[str | None, tuple[Effect, ...]]] = {
    ev.BOOTSTRAP_INITIATED: (Effect.PROJECT, Effect.ENQUEUE),
    ev.QUEUE_PENDING: (Effect.PROJECT, Effect.START),
}
_PROJECT_ONLY: Final = (Effect.PROJECT,)


def effects_for(event_type: str | None) -> tuple[Effect, ...]:
    """The effects a record of ``event_type`` (None: unknown or unreadable) is routed to."""
    return _BY_TYPE.get(event_type, _PROJECT_ONLY)


def handler_effect(effects: tuple[Effect, ...]) -> Effect | None:
    """The one stream-ordered handler effect among ``effects`` (enqueue or start), if any."""
    for effect in effects:
        if effect is not Effect.PROJECT:
            return effect
    return None
