"""Running the real pipeline for a test: `pipeline run` (reader + agents) as a process, on
its own database, slot, topics and consumer group, with the real bootstrap worker
in-process on its own task queue."""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import re
import signal
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from temporalio.client import Client

from pipeline.bootstrap.settings import from_env
from pipeline.bootstrap.worker import build_worker
from pipeline.config import Settings, load_settings
from tests.integration.ports import free_port

# The worker's HMAC key for invitation tokens (a test value; production's is a Secret).
INVITATION_KEY = "test-invitation-key-" + "0" * 32


def pipeline_env(dsn: str, kafka: str, temporal: str, tmp: Path) -> dict[str, str]:
    """Environment for one isolated pipeline: unique slot, topics, group and task queue."""
    suffix = uuid.uuid4().hex[:10]
    return {
        **os.environ,
        "PIPELINE_DATABASE_URL": dsn,
        "PIPELINE_KAFKA_BOOTSTRAP_SERVERS": kafka,
        "PIPELINE_TEMPORAL_ADDRESS": temporal,
        "PIPELINE_TOPIC": f"events-{suffix}",
        "PIPELINE_DEAD_LETTER_TOPIC": f"dlq-{suffix}",
        "PIPELINE_TOPIC_PARTITIONS": "4",
        "PIPELINE_SLOT_NAME": f"slot_{suffix}",
        "PIPELINE_CONSUMER_GROUP": f"group-{suffix}",
        "PIPELINE_TEMPORAL_TASK_QUEUE": f"queue-{suffix}",
        "PIPELINE_WEB_PORT": str(free_port()),
        "PIPELINE_DATA_DIR": str(tmp / f"faust-{suffix}"),
        "PIPELINE_EMAIL_PROVIDER": "local",
        "PIPELINE_EMAIL_OUTBOX_DIR": str(tmp / "outbox"),
        "PIPELINE_DNS_PROVIDER": "local",
        "PIPELINE_BOOTSTRAP_RETRY_INITIAL_MS": "100",
        "PIPELINE_INVITATION_KEY": INVITATION_KEY,
    }


def emailed_token(body: str) -> str:
    """The invitation token of the accept link in an email body."""
    match = re.search(r"invitations/accept\?token=([A-Za-z0-9._~-]+)", body)
    assert match is not None, body
    return match[1]


def eml_token(raw: str) -> str:
    """The invitation token of a whole message file (the local provider's outbox)."""
    message = email.message_from_string(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return emailed_token(str(message.get_content()))


def pipeline_cli() -> str:
    return str(Path(sys.executable).parent / "pipeline")


@dataclass
class RunningPipeline:
    env: dict[str, str]
    settings: Settings
    proc: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def alive(self) -> bool:
        return self.proc.poll() is None


def start_pipeline(
    env: dict[str, str], tmp: Path, name: str = "run", *, verbose: bool = False
) -> RunningPipeline:
    """``pipeline run`` (``pipeline -v run`` if verbose), its output in a file of tmp."""
    log = tmp / f"pipeline-{name}-{uuid.uuid4().hex[:6]}.log"
    proc = subprocess.Popen(
        [pipeline_cli(), *(["-v"] if verbose else []), "run"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return RunningPipeline(env, load_settings(env), proc, log)


def stop_pipeline(p: RunningPipeline, sig: signal.Signals = signal.SIGTERM) -> None:
    if p.proc.poll() is None:
        os.killpg(p.proc.pid, sig)
        try:
            p.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(p.proc.pid, signal.SIGKILL)
            p.proc.wait()


ROLES_SQL = Path(__file__).resolve().parents[2] / "sql" / "roles.sql"


def as_role(dsn: str, role: str) -> str:
    """``dsn`` logging in as ``role`` instead (the dev cluster trusts local logins)."""
    parts = urlsplit(dsn)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{role}@{host}"))


def least_privilege_env(dsn: str, env: dict[str, str]) -> dict[str, str]:
    """Create the roles of sql/roles.sql in ``dsn``'s database (as its superuser) and
    point the agents, the reader and the worker at their own roles."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(ROLES_SQL.read_text().encode())
    return {
        **env,
        "PIPELINE_DATABASE_URL": as_role(dsn, "pipeline_agents"),
        "PIPELINE_READER_DATABASE_URL": as_role(dsn, "pipeline_reader"),
        "PIPELINE_WORKER_DATABASE_URL": as_role(dsn, "pipeline_worker"),
    }


@asynccontextmanager
async def pipeline_and_worker(
    dsn: str, kafka: str, client: Client, tmp: Path, *, least_privilege: bool = False
) -> AsyncIterator[RunningPipeline]:
    """`pipeline run` plus the real bootstrap worker, stopped afterwards.

    ``least_privilege``: the reader, agents and worker log in as the roles of
    sql/roles.sql instead of the superuser that owns ``dsn``'s database.
    """
    env = pipeline_env(dsn, kafka, client.service_client.config.target_host, tmp)
    if least_privilege:
        env = least_privilege_env(dsn, env)
    worker = build_worker(client, from_env(env))
    running = start_pipeline(env, tmp)
    try:
        async with worker:
            yield running
    finally:
        stop_pipeline(running)


async def eventually(
    check: Callable[[], Awaitable[bool] | bool],
    what: str,
    running: RunningPipeline,
    timeout: float = 120,
) -> None:
    """Poll check until true; on timeout fail with the pipeline's log."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if not running.alive():
            raise AssertionError(
                f"pipeline exited ({running.proc.returncode}) while waiting for {what}:\n{running.log_tail()}"
            )
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}:\n{running.log_tail()}")


def event_types(dsn: str, org: uuid.UUID) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [
            str(r[0])
            for r in conn.execute(
                "SELECT event_type FROM domain_events WHERE stream_id = %s ORDER BY stream_version",
                (org,),
            ).fetchall()
        ]


def slot_active(dsn: str, slot: str) -> bool:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchone()
    return bool(row and row[0])


async def wait_exit(running: RunningPipeline, what: str, timeout: float = 300) -> int:
    """Wait until the process exits by itself; its return code (-9 after a SIGKILL).

    The timeout only bounds a hang (the process never reached what it should die at).
    """
    deadline = asyncio.get_running_loop().time() + timeout
    while running.proc.poll() is None:
        if asyncio.get_running_loop().time() >= deadline:
            raise AssertionError(
                f"the pipeline is still running, waiting for {what}:\n{running.log_tail()}"
            )
        await asyncio.sleep(0.1)
    return running.proc.returncode


def _http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


async def scrape_metrics(running: RunningPipeline) -> dict[str, float]:
    """The process's /metrics: each sample's value summed over its labels, by metric name."""
    page = await asyncio.to_thread(
        _http_get, f"http://127.0.0.1:{running.settings.web_port}/metrics"
    )
    totals: dict[str, float] = {}
    for line in page.splitlines():
        if not line or line.startswith("#"):
            continue
        sample, _, value = line.rpartition(" ")
        name = sample.partition("{")[0]
        totals[name] = totals.get(name, 0.0) + float(value)
    return totals
