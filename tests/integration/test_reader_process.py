"""`pipeline run` and its reader child are one unit, seen from the outside.

The reader runs in a process of its own (pipeline/reader_process.py). Nothing outside
may tell, except that it is faster: a SIGKILL of `pipeline run` alone (Kubernetes and the
OOM killer signal one pid, not the group) leaves no reader behind holding the slot; a
reader that dies takes `pipeline run` with it, by the same signal, so the orchestrator
restarts the whole; a SIGTERM to `pipeline run` alone stops both, the reader's last
position confirmed; and the reader's figures still reach /metrics.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from temporalio.client import Client

from tests.integration.pipeline_process import (
    RunningPipeline,
    eventually,
    pipeline_env,
    scrape_metrics,
    slot_active,
    start_pipeline,
    stop_pipeline,
    wait_exit,
)
from tests.integration.test_pipeline_crash import FAST_GROUP_ENV, emit_bootstraps

pytestmark = pytest.mark.integration

GRACE = 22.5  # half the smaller grace period of the deployments (test_shutdown.py)


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _gone(pid: int) -> bool:
    """No such process, or only its zombie (reaped later by whoever adopted it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


async def _started(
    fresh_db: str, kafka_bootstrap: str, temporal_client: Client, tmp_path: Path, name: str
) -> tuple[RunningPipeline, int]:
    env = {
        **pipeline_env(
            fresh_db, kafka_bootstrap, temporal_client.service_client.config.target_host, tmp_path
        ),
        **FAST_GROUP_ENV,
    }
    running = start_pipeline(env, tmp_path, name)
    await eventually(lambda: slot_active(fresh_db, running.settings.slot_name), "the slot", running)
    (reader,) = _children(running.proc.pid)
    return running, reader


async def test_sigkill_of_pipeline_run_alone_leaves_no_reader_holding_the_slot(
    fresh_db: str, kafka_bootstrap: str, temporal_client: Client, tmp_path: Path
) -> None:
    running, reader = await _started(fresh_db, kafka_bootstrap, temporal_client, tmp_path, "a")
    try:
        os.kill(running.proc.pid, signal.SIGKILL)  # the pid alone, not its group
        assert await wait_exit(running, "the SIGKILL", 30) == -signal.SIGKILL
        await eventually(lambda: _gone(reader), "the reader child to die with it", running, 10)
        await eventually(
            lambda: not slot_active(fresh_db, running.settings.slot_name), "a free slot", running
        )
        again = start_pipeline(running.env, tmp_path, "b")
        try:
            await eventually(
                lambda: slot_active(fresh_db, running.settings.slot_name), "a new reader", again
            )
        finally:
            stop_pipeline(again)
    finally:
        stop_pipeline(running, signal.SIGKILL)


async def test_a_reader_killed_alone_takes_pipeline_run_with_it_by_the_same_signal(
    fresh_db: str, kafka_bootstrap: str, temporal_client: Client, tmp_path: Path
) -> None:
    running, reader = await _started(fresh_db, kafka_bootstrap, temporal_client, tmp_path, "a")
    try:
        os.kill(reader, signal.SIGKILL)
        code = await wait_exit(running, "pipeline run to follow its reader", 30)
        assert code == -signal.SIGKILL, f"exit {code}:\n{running.log_tail()}"
        assert "died by SIGKILL; pipeline run dies with it" in running.log.read_text()
    finally:
        stop_pipeline(running, signal.SIGKILL)


async def test_sigterm_to_pipeline_run_alone_stops_both_and_confirms_what_was_read(
    fresh_db: str, kafka_bootstrap: str, temporal_client: Client, tmp_path: Path
) -> None:
    running, reader = await _started(fresh_db, kafka_bootstrap, temporal_client, tmp_path, "a")
    try:
        emit_bootstraps(fresh_db, [uuid.uuid4() for _ in range(20)])
        with psycopg.connect(fresh_db) as conn:
            row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        assert row is not None
        written = row[0]

        async def counted() -> bool:
            got = await scrape_metrics(running)
            return got.get("pipeline_reader_events_read_total", 0) >= 20

        await eventually(counted, "the reader's count on /metrics", running)
        assert (await scrape_metrics(running)).get("pipeline_reader_active") == 1.0
        began = time.monotonic()
        os.kill(running.proc.pid, signal.SIGTERM)  # as Kubernetes signals the container
        code = await wait_exit(running, "the SIGTERM", GRACE)
        took = time.monotonic() - began
        assert code == 0, f"exit {code}:\n{running.log_tail()}"
        # The signs of a connection closed under a statement in flight (the handlers were
        # starting workflows as the signal came; it crashed the process at exit once).
        log_text = running.log.read_text(errors="replace")
        for sign in ("connection pointer is NULL", "connection socket closed"):
            assert sign not in log_text, f"{sign!r} at shutdown:\n{running.log_tail()}"
        assert _gone(reader), "the reader outlived pipeline run"
        print(f"SIGTERM to exit: {took:.1f}s")
        with psycopg.connect(fresh_db) as conn:
            row = conn.execute(
                "SELECT active, confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots "
                "WHERE slot_name = %s",
                (written, running.settings.slot_name),
            ).fetchone()
        assert row == (False, True), f"slot (active, confirmed past the events): {row}"
    finally:
        stop_pipeline(running, signal.SIGKILL)
