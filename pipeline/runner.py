"""``pipeline run``: the replication reader (a child process) and the consumer edge.

Every replica runs the reader task; the replication slot admits one walsender, so exactly
one replica reads and the others wait (logging that they do) and take over when the slot
is free (DESIGN.md invariant 6). Faust's leader election is deliberately not used for
this: a leader frozen by a long GC pause keeps acting as leader after it resumes, while
a frozen walsender connection loses the slot for good.

The reader runs in a process of its own (:mod:`pipeline.reader_process`), so it keeps
its sub-millisecond commit -> Kafka while the edge folds, and the two use both cores.
"""

from __future__ import annotations

import logging

from prometheus_client import Gauge

from pipeline import health, metrics
from pipeline.app import run_app
from pipeline.config import Settings
from pipeline.reader_process import ReaderProcess
from replication.reader_config import ReaderStats

log = logging.getLogger(__name__)

READER_ACTIVE = Gauge("pipeline_reader_active", "1 while this process holds the replication slot.")
CONFIRMED_LSN = Gauge(
    "pipeline_replication_confirmed_lsn",
    "The slot's confirmed flush LSN as reported by this reader.",
)
LAG_BYTES = Gauge(
    "pipeline_replication_lag_bytes",
    "Server WAL end minus the confirmed flush LSN, as last seen by this reader.",
)


def export_reader_stats(stats: ReaderStats) -> None:
    """Make the reader's plain counters visible on /metrics (read at scrape time)."""
    READER_ACTIVE.set_function(lambda: 1.0 if stats.active else 0.0)
    CONFIRMED_LSN.set_function(lambda: float(int(stats.confirmed_lsn)))
    LAG_BYTES.set_function(
        lambda: float(max(0, int(stats.server_wal_end) - int(stats.confirmed_lsn)))
    )
    metrics.export_reader_counters(lambda: stats)  # pipeline_reader_events_*_total


def reader_process(settings: Settings) -> ReaderProcess:
    """The reader's child process, its figures on /metrics and /readyz (not started yet)."""
    stats = ReaderStats()
    export_reader_stats(stats)
    health.register(
        health.reader_lag_check(
            lambda: stats.active, lambda: stats.backlog_bytes, settings.ready_max_lag_bytes
        )
    )
    health.register(health.reader_dead_letters_check(lambda: stats.dead_letters_unsent))
    return ReaderProcess(stats)


def run(settings: Settings) -> None:
    """Run the reader (its own process) and the consumer edge until SIGTERM/SIGINT."""
    run_app(settings, extra_tasks=[reader_process(settings).run])
