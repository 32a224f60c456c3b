"""The projection appliers the projection agent runs, in order, on every batch.

An applier is ``async (conn, events) -> int``: it folds a batch of event rows (dicts with
the ``domain_events`` columns plus ``position`` / ``commit_lsn`` / ``idx``) into its
tables inside the caller's transaction and returns how many events changed a row. The
agent commits all appliers' writes and the partition checkpoints in one transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

import psycopg
from psycopg.rows import TupleRow

from pipeline.projections.invitations import apply_invitation_events
from pipeline.projections.organizations import apply_organization_events
from pipeline.projections.queue import apply_queue_events

ProjectionApplier = Callable[
    [psycopg.AsyncConnection[TupleRow], list[dict[str, object]]], Awaitable[int]
]

# Run in this order; each function's __name__ labels the applied-events metric and logs.
PROJECTIONS: Final[list[ProjectionApplier]] = [
    apply_queue_events,
    apply_organization_events,
    apply_invitation_events,
]


def applier_name(applier: ProjectionApplier) -> str:
    """The label of an applier: its function name without the ``apply_`` prefix."""
    name = str(getattr(applier, "__name__", "projection"))
    return name.removeprefix("apply_")
