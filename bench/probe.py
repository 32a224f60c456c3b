"""Commit times from the database itself: a ``test_decoding`` slot read after the run.

``track_commit_timestamp`` is off on the dev cluster (and cannot be turned on without a
restart), so ``pg_xact_commit_timestamp`` is not available. The commit record in the WAL
carries the same timestamp, though: a logical slot created before the load, read once
afterwards with ``include-timestamp``, gives the commit time of every transaction — of
the event store's rows and of the projection's writes alike — without touching the paths
being measured (no walsender runs during the load; the slot only retains WAL).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import psycopg

_COMMIT = re.compile(r"^COMMIT (\d+) \(at (.+)\)$")
_EVENT = re.compile(
    r"^table public\.domain_events: INSERT: id\[uuid\]:'([0-9a-f-]+)' "
    r"stream_id\[uuid\]:'([0-9a-f-]+)' .*? event_type\[text\]:'([^']*)'"
)
_JOB = re.compile(
    r"^table public\.workflow_queue_projection: (?:INSERT|UPDATE): job_id\[uuid\]:'([0-9a-f-]+)'"
    r".*? status\[text\]:'([a-z]+)'"
)


@dataclass(frozen=True, slots=True)
class CommittedEvent:
    """A ``domain_events`` row and the commit time of its transaction (POSIX seconds)."""

    event_id: str
    stream_id: str
    event_type: str
    committed: float


@dataclass(slots=True)
class CommitLog:
    """What the slot saw: events, and the first projection write of each job."""

    events: list[CommittedEvent] = field(default_factory=list)
    job_first_write: dict[str, float] = field(default_factory=dict)
    job_first_status: dict[str, str] = field(default_factory=dict)

    def by_type(self, event_type: str) -> dict[str, CommittedEvent]:
        """Events of one type by id."""
        return {e.event_id: e for e in self.events if e.event_type == event_type}


def parse(lines: Iterable[str]) -> CommitLog:
    """Fold test_decoding output (include-xids, include-timestamp) into a CommitLog."""
    log = CommitLog()
    pending_events: list[tuple[str, str, str]] = []
    pending_jobs: list[tuple[str, str]] = []
    for line in lines:
        if line.startswith("BEGIN"):
            pending_events.clear()
            pending_jobs.clear()
            continue
        if line.startswith("COMMIT"):
            match = _COMMIT.match(line)
            if match is None:
                raise ValueError(f"unexpected commit line (include-timestamp off?): {line!r}")
            at = datetime.fromisoformat(match.group(2)).timestamp()
            for event_id, stream_id, event_type in pending_events:
                log.events.append(CommittedEvent(event_id, stream_id, event_type, at))
            for job_id, status in pending_jobs:
                if job_id not in log.job_first_write:
                    log.job_first_write[job_id] = at
                    log.job_first_status[job_id] = status
            continue
        event = _EVENT.match(line)
        if event is not None:
            pending_events.append((event.group(1), event.group(2), event.group(3)))
            continue
        job = _JOB.match(line)
        if job is not None:
            pending_jobs.append((job.group(1), job.group(2)))
    return log


def create_slot(dsn: str, slot: str) -> None:
    """Create the probe's slot; everything committed after this is in it."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'test_decoding')", (slot,))


def read_slot(dsn: str, slot: str) -> CommitLog:
    """Consume the slot (all of it) and parse what it holds."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        rows = conn.execute(
            "SELECT data FROM pg_logical_slot_get_changes(%s, NULL, NULL, "
            "'include-xids', '1', 'include-timestamp', '1', 'skip-empty-xacts', '1')",
            (slot,),
        ).fetchall()
    return parse(str(r[0]) for r in rows)


def drop_slot(dsn: str, slot: str) -> None:
    """Drop the probe's slot if it exists."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            "WHERE slot_name = %s",
            (slot,),
        )
