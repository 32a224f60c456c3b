"""The agents' test harness: a real `python -m pipeline.app` subprocess on the real
services, with the replication reader played by :class:`contract_feed.Feeder` (which also
feeds the agents' own events back, as the reader does in production), and the plain SQL,
Kafka and Temporal reads the tests check it with. Used by test_agents.py and
test_agents_routing.py."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord
from temporalio.client import Client
from temporalio.worker import Worker

from pipeline import events as ev
from pipeline.config import Settings
from pipeline.eventstore import NewEvent, emit_sync
from pipeline.lifecycle import ensure_topics
from tests.integration.bootstrap_standin import StandInBootstrapWorkflow
from tests.integration.contract_feed import Feeder
from tests.integration.pipeline_process import free_port

REPO = Path(__file__).resolve().parents[2]
WAIT_SECONDS = 120.0


@dataclass
class Setup:
    settings: Settings
    task_queue: str


@pytest.fixture
def setup(fresh_db: str, kafka_bootstrap: str) -> Setup:
    name = f"agents-{uuid.uuid4().hex[:10]}"
    settings = Settings(
        database_url=fresh_db,
        kafka_bootstrap_servers=kafka_bootstrap,
        temporal_address="127.0.0.1:7233",  # replaced per process by app_env (the layout's)
        topic=name,
        dead_letter_topic=f"{name}-dlq",
        topic_partitions=3,
        consumer_group=f"{name}-g1",
        temporal_task_queue=f"tq-{uuid.uuid4()}",
    )
    return Setup(settings, settings.temporal_task_queue)


def app_env(settings: Settings, temporal_address: str, group: str, tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "PIPELINE_DATABASE_URL": settings.database_url.get_secret_value(),
            "PIPELINE_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "PIPELINE_TEMPORAL_ADDRESS": temporal_address,
            "PIPELINE_TEMPORAL_NAMESPACE": "default",
            "PIPELINE_TEMPORAL_TASK_QUEUE": settings.temporal_task_queue,
            "PIPELINE_TOPIC": settings.topic,
            "PIPELINE_DEAD_LETTER_TOPIC": settings.dead_letter_topic,
            "PIPELINE_TOPIC_PARTITIONS": str(settings.topic_partitions),
            "PIPELINE_CONSUMER_GROUP": group,
            "PIPELINE_WEB_PORT": str(free_port()),
            "PIPELINE_INSTANCE_ID": f"{group}-instance",
            "PIPELINE_DATA_DIR": str(tmp / group),
        }
    )
    return env


@dataclass
class App:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    worker_id: str

    def metric(self, name: str, **labels: str) -> float:
        """A sample of the app's /metrics (0 when absent or the app is not serving yet)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return 0.0
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        pattern = re.escape(name) + (r"\{" + re.escape(want) + r"\}" if want else "")
        match = re.search(rf"^{pattern} (\S+)$", text, re.M)
        return float(match.group(1)) if match else 0.0

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-60:])


@contextlib.contextmanager
def running_app(env: dict[str, str], tmp: Path) -> Iterator[App]:
    log = tmp / f"{env['PIPELINE_CONSUMER_GROUP']}-{uuid.uuid4().hex[:6]}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.app"], env=env, cwd=REPO, stdout=out, stderr=out
        )
    app = App(proc, int(env["PIPELINE_WEB_PORT"]), log, env["PIPELINE_INSTANCE_ID"])
    try:
        yield app
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def eventually(check: Callable[[], Awaitable[bool]], what: str, app: App) -> None:
    """Poll check until it holds; fail with the app's log if it never does."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    while not await check():
        if app.proc.poll() is not None:
            pytest.fail(f"the app exited ({app.proc.returncode}) waiting for {what}:\n{app.tail()}")
        if loop.time() > deadline:
            pytest.fail(f"timed out waiting for {what}; app log:\n{app.tail()}")
        await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def services(
    setup: Setup, client: Client, kafka: str, *, event_type_header: bool = False
) -> AsyncIterator[Feeder]:
    await ensure_topics(setup.settings)
    feeder = Feeder(
        setup.settings.database_url.get_secret_value(),
        kafka,
        setup.settings.topic,
        event_type_header=event_type_header,
    )
    async with Worker(client, task_queue=setup.task_queue, workflows=[StandInBootstrapWorkflow]):
        await feeder.start()
        try:
            yield feeder
        finally:
            await feeder.stop()


def emit_initiated(dsn: str, org: uuid.UUID, subdomain: str) -> uuid.UUID:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return emit_sync(
            conn,
            NewEvent(
                stream_id=org,
                stream_type=ev.STREAM_TYPE_ORGANIZATION,
                event_type=ev.BOOTSTRAP_INITIATED,
                event_data={
                    "name": "Acme",
                    "subdomain": subdomain,
                    "admins": [{"email": "ada@example.com", "role": "organization_admin"}],
                },
                idempotency_key=f"request:{org}",
                event_metadata={"source": "api"},
            ),
        )


def stream_events(dsn: str, org: uuid.UUID) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT event_type, event_data, event_metadata, idempotency_key FROM domain_events "
            "WHERE stream_id = %s ORDER BY stream_version",
            (org,),
        ).fetchall()


def queue_row(dsn: str, job_id: uuid.UUID) -> tuple[object, ...] | None:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT status, worker_id, workflow_id, run_id, attempts, event_type, "
            "claimed_at IS NOT NULL, started_at IS NOT NULL, last_commit_lsn::text, last_idx, "
            "updated_at FROM workflow_queue_projection WHERE job_id = %s",
            (job_id,),
        ).fetchone()


def checkpoint_positions(dsn: str, consumer: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT topic, kafka_partition, commit_lsn::text, idx FROM pipeline_checkpoints "
            "WHERE consumer = %s ORDER BY topic, kafka_partition",
            (consumer,),
        ).fetchall()


async def executions(client: Client, workflow_id: str) -> list[str]:
    return [w.run_id async for w in client.list_workflows(f"WorkflowId = '{workflow_id}'")]


async def all_consumed(app: App, count: int) -> bool:
    agents = ("enqueue", "starter", "projection")
    return all(app.metric("pipeline_events_consumed_total", agent=a) >= count for a in agents)


async def read_dead_letters(
    kafka: str, topic: str, want: int
) -> list[ConsumerRecord[bytes, bytes]]:
    """The dead-letter topic's records, read with a plain consumer until want arrived."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    got: list[ConsumerRecord[bytes, bytes]] = []
    try:
        for _ in range(50):
            for records in (await consumer.getmany(timeout_ms=200)).values():
                got.extend(records)
            if len(got) >= want:
                break
    finally:
        await consumer.stop()
    return got
