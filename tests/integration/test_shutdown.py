"""SIGTERM stops each long-running command within its grace period, whatever its
dependencies do, and what was not acknowledged is handled again by the next process.

- `pipeline run` while Temporal is unreachable: the starter's records sit in its retry
  loop; SIGTERM still stops the process well within the StatefulSet's grace period, and
  the restarted process starts every job (the pending records were not committed).
- `pipeline worker` and `pipeline reader` stop on SIGTERM with exit code 0.

The bounds below are correctness limits (a process still running after its grace period
is SIGKILLed by Kubernetes, mid-write), not performance figures; the measured times are
printed for the report.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from temporalio.client import Client

from pipeline import events as ev
from tests.integration.pipeline_process import (
    eventually,
    pipeline_cli,
    pipeline_env,
    scrape_metrics,
    slot_active,
    start_pipeline,
    stop_pipeline,
)
from tests.integration.test_pipeline_crash import (
    FAST_GROUP_ENV,
    emit_bootstraps,
    standin_worker,
    started_count,
)
from tests.integration.test_workflow_started import consumed_everything

pytestmark = pytest.mark.integration

# The StatefulSet's terminationGracePeriodSeconds is 60 and the worker Deployment's 45;
# each process has to be gone well before, so the limit here is the smaller one's half.
GRACE = 22.5
HANG = 180.0


def _closed_address() -> str:
    with socket.socket() as s:  # a port nobody listens on: Temporal "down"
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def _terminate(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int | None, float]:
    """SIGTERM the process group; (exit code or None if still running, seconds waited)."""
    began = time.monotonic()
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        code: int | None = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        code = None
    return code, time.monotonic() - began


async def test_sigterm_stops_run_while_temporal_is_unreachable_and_nothing_is_lost(
    fresh_db: str, kafka_bootstrap: str, temporal_client: Client, tmp_path: Path
) -> None:
    env = {
        **pipeline_env(
            fresh_db, kafka_bootstrap, temporal_client.service_client.config.target_host, tmp_path
        ),
        **FAST_GROUP_ENV,
    }
    orgs = [uuid.uuid4() for _ in range(5)]
    down = start_pipeline({**env, "PIPELINE_TEMPORAL_ADDRESS": _closed_address()}, tmp_path, "down")
    try:
        await eventually(lambda: slot_active(fresh_db, down.settings.slot_name), "a reader", down)
        emit_bootstraps(fresh_db, orgs)

        async def retrying() -> bool:
            metrics = await scrape_metrics(down)
            return metrics.get("pipeline_workflow_starts_total", 0.0) >= 2 * len(orgs)

        await eventually(retrying, "start attempts against an unreachable Temporal", down, HANG)
        code, waited = await asyncio.to_thread(_terminate, down.proc, GRACE)
        print(f"pipeline run stopped {waited:.1f}s after SIGTERM (Temporal unreachable)")
        assert code is not None, f"still running {GRACE}s after SIGTERM:\n{down.log_tail()}"
        assert code == 0, f"exit {code}:\n{down.log_tail()}"
    finally:
        stop_pipeline(down, signal.SIGKILL)
    assert started_count(fresh_db) == 0

    # Nothing was acknowledged: the next process starts every job, once.
    async with standin_worker(temporal_client, env):
        again = start_pipeline(env, tmp_path, "again")
        try:

            async def all_started() -> bool:
                return started_count(fresh_db) == len(orgs) and await consumed_everything(again)

            await eventually(all_started, "every job started after the restart", again, HANG)
        finally:
            stop_pipeline(again)
    for org in orgs:
        wid = ev.workflow_id_for(str(org))
        runs = [w.run_id async for w in temporal_client.list_workflows(f"WorkflowId = '{wid}'")]
        assert len(runs) == 1, (wid, runs)


def _start(command: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [pipeline_cli(), command],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


async def _sigterm_stops(command: str, env: dict[str, str], log: Path, ready: str) -> None:
    proc = _start(command, env, log)
    try:
        deadline = time.monotonic() + HANG
        while ready not in log.read_text(errors="replace"):
            assert proc.poll() is None, f"{command} exited {proc.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"{command} never got ready:\n{log.read_text()}"
            await asyncio.sleep(0.2)
        code, waited = await asyncio.to_thread(_terminate, proc, GRACE)
        print(f"pipeline {command} stopped {waited:.1f}s after SIGTERM")
        assert code == 0, f"{command}: exit {code} after {waited:.1f}s:\n{log.read_text()}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


async def test_sigterm_stops_worker_and_reader(
    fresh_db: str, kafka_bootstrap: str, temporal_client: Client, tmp_path: Path
) -> None:
    env = pipeline_env(
        fresh_db, kafka_bootstrap, temporal_client.service_client.config.target_host, tmp_path
    )
    await _sigterm_stops("worker", env, tmp_path / "worker.log", "bootstrap worker polling")
    await _sigterm_stops("reader", env, tmp_path / "reader.log", "streaming from lsn")
