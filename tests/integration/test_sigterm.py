"""Issue 15 item 4: `pipeline reader` and `pipeline worker` stop cleanly on SIGTERM, within
their grace period (Kubernetes sends SIGTERM, then SIGKILL after the grace period)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

from pipeline.dev.layout import DevLayout
from tests.integration.pipeline_process import pipeline_cli, pipeline_env

pytestmark = pytest.mark.integration

READER_GRACE_S = 10.0
WORKER_GRACE_S = 5.0  # PIPELINE_WORKER_GRACEFUL_SHUTDOWN_S below: nothing runs, so less


def slot_active(dsn: str, slot: str) -> bool:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchone()
    return bool(row and row[0])


async def wait_for(
    condition: object, what: str, proc: subprocess.Popen[bytes], timeout: float = 90
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{what}: the process exited early with {proc.returncode}")
        if await asyncio.to_thread(condition):  # type: ignore[arg-type]
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout}s")


def spawn(command: str, env: dict[str, str], log: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen([pipeline_cli(), command], env=env, stdout=log, stderr=log)  # type: ignore[call-overload]


def stop(proc: subprocess.Popen[bytes]) -> tuple[int, float]:
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError("still running 60 s after SIGTERM") from None
    return code, time.monotonic() - started


async def test_reader_stops_within_its_grace_period_and_releases_the_slot(
    dev_layout: DevLayout, fresh_db: str, tmp_path: Path
) -> None:
    env = pipeline_env(fresh_db, dev_layout.kafka_bootstrap, dev_layout.temporal_address, tmp_path)
    slot = env["PIPELINE_SLOT_NAME"]
    log = (tmp_path / "reader.log").open("wb")
    proc = spawn("reader", env, log)
    try:
        await wait_for(lambda: slot_active(fresh_db, slot), "the reader holds the slot", proc)
        code, took = await asyncio.to_thread(stop, proc)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    output = (tmp_path / "reader.log").read_text()
    assert code == 0, output
    assert took < READER_GRACE_S, f"{took:.1f}s"
    assert "Traceback" not in output
    assert not slot_active(fresh_db, slot)


async def test_worker_stops_within_its_grace_period(
    dev_layout: DevLayout, fresh_db: str, tmp_path: Path
) -> None:
    env = pipeline_env(fresh_db, dev_layout.kafka_bootstrap, dev_layout.temporal_address, tmp_path)
    env["PIPELINE_WORKER_GRACEFUL_SHUTDOWN_S"] = str(WORKER_GRACE_S)
    log_path = tmp_path / "worker.log"
    log = log_path.open("wb")
    proc = spawn("worker", env, log)
    try:
        await wait_for(
            lambda: "bootstrap worker polling" in log_path.read_text(), "the worker polls", proc
        )
        code, took = await asyncio.to_thread(stop, proc)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    output = log_path.read_text()
    assert code == 0, output
    assert took < WORKER_GRACE_S + 5, f"{took:.1f}s"
    assert "bootstrap worker stopped" in output
    assert "Traceback" not in output
