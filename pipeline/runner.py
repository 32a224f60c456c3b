"""``pipeline run``: the replication reader and the Faust agents in one process.

Every replica runs the reader task; the replication slot admits one walsender, so exactly
one replica reads and the others wait (logging that they do) and take over when the slot
is free (DESIGN.md invariant 6). Faust's leader election is deliberately not used for
this: a leader frozen by a long GC pause keeps acting as leader after it resumes, while
a frozen walsender connection loses the slot for good.
"""

from __future__ import annotations

import asyncio
import logging
import os

from prometheus_client import Counter, Gauge

from pipeline import health, metrics
from pipeline.app import run_app
from pipeline.cli_exit import exit_code
from pipeline.config import Settings, reader_config
from pipeline.lifecycle import BackgroundTask
from replication.errors import ReaderSetupError
from replication.reader import Reader, ReaderStats

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
SETUP_FAILURES = Counter("pipeline_reader_setup_failures", "Fatal reader setup errors.")


def export_reader_stats(stats: ReaderStats) -> None:
    """Make the reader's plain counters visible on /metrics (read at scrape time)."""
    READER_ACTIVE.set_function(lambda: 1.0 if stats.active else 0.0)
    CONFIRMED_LSN.set_function(lambda: float(int(stats.confirmed_lsn)))
    LAG_BYTES.set_function(
        lambda: float(max(0, int(stats.server_wal_end) - int(stats.confirmed_lsn)))
    )
    metrics.export_reader_counters(lambda: stats)  # pipeline_reader_events_*_total


def reader_task(settings: Settings) -> tuple[Reader, BackgroundTask]:
    """The reader and the coroutine the app runs it in."""
    reader = Reader(reader_config(settings))
    export_reader_stats(reader.stats)
    stats = reader.stats
    health.register(
        health.reader_lag_check(
            lambda: stats.active, lambda: stats.backlog_bytes, settings.ready_max_lag_bytes
        )
    )
    health.register(health.reader_dead_letters_check(lambda: stats.dead_letters_unsent))

    async def run_reader() -> None:
        try:
            await reader.run(asyncio.Event())  # stopped by cancellation on shutdown
        except Exception as exc:
            # The reader raises only what retrying cannot fix (replication.retry: FATAL;
            # wal_level, privileges, a pooler... or a bug): stop the whole process so the
            # orchestrator shows the error instead of a silent non-reader.
            setup = isinstance(exc, ReaderSetupError)  # its message says what to change
            if setup:
                SETUP_FAILURES.inc()
            log.critical("replication reader cannot run: %s", exc, exc_info=None if setup else exc)
            logging.shutdown()
            os._exit(exit_code(exc))

    return reader, run_reader


def run(settings: Settings) -> None:
    """Run the reader and the agents until SIGTERM/SIGINT."""
    _, task = reader_task(settings)
    run_app(settings, extra_tasks=[task])
