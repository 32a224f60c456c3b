"""The agents on the real services: Kafka → Faust (a real `python -m pipeline.app`
subprocess) → PostgreSQL and Temporal. The replication reader is played by
:class:`contract_feed.Feeder`, which also feeds the agents' own events back, as the
reader does in production."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
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
from pipeline.dev.layout import DevLayout
from pipeline.eventstore import NewEvent, emit_sync
from pipeline.lifecycle import ensure_topics
from tests.integration.bootstrap_standin import StandInBootstrapWorkflow
from tests.integration.contract_feed import Feeder

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
WAIT_SECONDS = 120.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
        temporal_address="127.0.0.1:7233",  # replaced per process by _env (the layout's)
        topic=name,
        dead_letter_topic=f"{name}-dlq",
        topic_partitions=3,
        consumer_group=f"{name}-g1",
        temporal_task_queue=f"tq-{uuid.uuid4()}",
    )
    return Setup(settings, settings.temporal_task_queue)


def _env(settings: Settings, temporal_address: str, group: str, tmp: Path) -> dict[str, str]:
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
            "PIPELINE_WEB_PORT": str(_free_port()),
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


async def test_chain_runs_once_and_redelivery_changes_nothing(
    setup: Setup,
    temporal_client: Client,
    kafka_bootstrap: str,
    tmp_path: Path,
    dev_layout: DevLayout,
) -> None:
    settings = setup.settings
    address = dev_layout.temporal_address
    org = uuid.uuid4()
    workflow_id = ev.workflow_id_for(str(org))
    async with services(setup, temporal_client, kafka_bootstrap) as feeder:
        env = _env(settings, address, settings.consumer_group, tmp_path)
        with running_app(env, tmp_path) as app:
            job_id = emit_initiated(
                settings.database_url.get_secret_value(), org, f"acme-{org.hex[:8]}"
            )

            async def chain_done() -> bool:
                row = queue_row(settings.database_url.get_secret_value(), job_id)
                return (
                    row is not None
                    and row[3] is not None
                    and len(feeder.produced) == 4
                    and await all_consumed(app, 4)
                )

            await eventually(chain_done, "initiated → … → workflow_started", app)

            events_before = stream_events(settings.database_url.get_secret_value(), org)
            assert [e[0] for e in events_before] == [
                ev.BOOTSTRAP_INITIATED,
                ev.QUEUE_PENDING,
                ev.QUEUE_CLAIMED,
                ev.BOOTSTRAP_WORKFLOW_STARTED,
            ]
            pending, claimed, started = (e[1] for e in events_before[1:])
            assert isinstance(pending, dict) and isinstance(claimed, dict)
            assert isinstance(started, dict)
            assert pending["job_id"] == str(job_id) == claimed["job_id"] == started["job_id"]
            assert pending["workflow_id"] == workflow_id == started["workflow_id"]
            assert pending["input"] == {
                "org_id": str(org),
                "name": "Acme",
                "subdomain": f"acme-{org.hex[:8]}",
                "admins": [{"email": "ada@example.com", "role": "organization_admin"}],
            }
            assert claimed["worker_id"] == app.worker_id
            assert events_before[1][3] == f"{job_id}:{ev.QUEUE_PENDING}"
            assert events_before[1][2] == {
                "causation_id": str(job_id),
                "source": "pipeline.enqueue",
            }

            runs = await executions(temporal_client, workflow_id)
            assert runs == [started["run_id"]]
            handle = temporal_client.get_workflow_handle(workflow_id)
            assert await asyncio.wait_for(handle.result(), WAIT_SECONDS) == str(
                job_id
            )  # the starter passed input + job_id

            row = queue_row(settings.database_url.get_secret_value(), job_id)
            assert row is not None
            assert row[:8] == (
                "processing",
                app.worker_id,
                workflow_id,
                started["run_id"],
                1,
                ev.BOOTSTRAP_INITIATED,
                True,
                True,
            )
            consumer = f"{settings.consumer_group}.projection"
            checkpoints = checkpoint_positions(settings.database_url.get_secret_value(), consumer)
            last_lsn = dict(feeder.produced[-1][2])["commit_lsn"].decode()
            assert checkpoints and checkpoints[0][0] == settings.topic
            assert last_lsn in {c[2] for c in checkpoints}

            # The enqueue agent started the job (the handoff); the starter agent then got
            # the pending event from Kafka and found the job started: in the event store
            # (skipped) or, if it raced the handoff, in Temporal (USE_EXISTING).
            def not_started_again() -> float:
                return app.metric("pipeline_workflow_starts_total", outcome="skipped") + app.metric(
                    "pipeline_workflow_starts_total", outcome="already_started"
                )

            assert app.metric("pipeline_workflow_starts_total", outcome="started") == 1
            assert not_started_again() == 1

            # Redelivery: the same records again, same positions (at-least-once Kafka).
            for record in list(feeder.produced):
                await feeder.send(*record)

            async def redelivered() -> bool:
                return await all_consumed(app, 8)

            await eventually(redelivered, "the redelivered records", app)
            # Both paths see the job started: the handoff of the redelivered initiated
            # event and the starter agent's redelivered pending event.
            assert not_started_again() == 3
            assert app.metric("pipeline_workflow_starts_total", outcome="started") == 1
            assert stream_events(settings.database_url.get_secret_value(), org) == events_before
            assert queue_row(settings.database_url.get_secret_value(), job_id) == row
            assert (
                checkpoint_positions(settings.database_url.get_secret_value(), consumer)
                == checkpoints
            )

        # A replay: a new consumer group reads the whole topic again from the start.
        env2 = _env(settings, address, f"{settings.consumer_group}-replay", tmp_path)
        with running_app(env2, tmp_path) as replay:

            async def replayed() -> bool:
                return await all_consumed(replay, 8)

            await eventually(replayed, "the replay of the whole topic", replay)
            assert replay.metric("pipeline_workflow_starts_total", outcome="started") == 0
            assert stream_events(settings.database_url.get_secret_value(), org) == events_before
            assert queue_row(settings.database_url.get_secret_value(), job_id) == row
            assert len(feeder.produced) == 4
    assert await executions(temporal_client, workflow_id) == runs


async def test_poison_records_go_to_the_dead_letter_topic_and_the_partition_flows(
    setup: Setup,
    temporal_client: Client,
    kafka_bootstrap: str,
    tmp_path: Path,
    dev_layout: DevLayout,
) -> None:
    settings = setup.settings
    address = dev_layout.temporal_address
    org = uuid.uuid4()
    key = str(org).encode()  # same key as the good events: same partition, before them
    async with services(setup, temporal_client, kafka_bootstrap) as feeder:
        with running_app(
            _env(settings, address, settings.consumer_group, tmp_path), tmp_path
        ) as app:
            not_json = feeder.next_headers()
            await feeder.send(key, b"{not json", not_json)
            breaks_contract = feeder.next_headers()
            bad_row = (
                b'{"id":"%s","stream_id":"%s","stream_type":"organization","stream_version":1,'
                b'"event_type":"organization.bootstrap.initiated","event_data":{"name":"x",'
                b'"subdomain":"x","admins":[]},"event_metadata":{"source":"api"},'
                b'"idempotency_key":null,"created_at":"2026-01-01T00:00:00+00:00"}'
            ) % (str(uuid.uuid4()).encode(), key)
            await feeder.send(key, bad_row, breaks_contract)
            job_id = emit_initiated(
                settings.database_url.get_secret_value(), org, f"ok-{org.hex[:8]}"
            )

            async def started() -> bool:
                row = queue_row(settings.database_url.get_secret_value(), job_id)
                return row is not None and row[3] is not None

            await eventually(started, "the good stream's workflow start", app)
            assert app.metric("pipeline_events_dead_lettered_total", reason="bad_value") == 1
            assert app.metric("pipeline_events_dead_lettered_total", reason="contract") == 1

    consumer = AIOKafkaConsumer(
        settings.dead_letter_topic,
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    try:
        got = []
        for _ in range(50):
            for records in (await consumer.getmany(timeout_ms=200)).values():
                got.extend(records)
            if len(got) >= 2:
                break
    finally:
        await consumer.stop()
    assert len(got) == 2
    by_kind = {dict(r.headers)["reason_kind"]: r for r in got}
    assert set(by_kind) == {b"bad_value", b"contract"}
    assert by_kind[b"bad_value"].value == b"{not json"
    contract_headers = dict(by_kind[b"contract"].headers)
    assert contract_headers["commit_lsn"] == dict(breaks_contract)["commit_lsn"]
    assert contract_headers["idx"] == b"0"
    assert contract_headers["original_topic"] == settings.topic.encode()
    assert b"admins" in contract_headers["reason"]
    # Both were the first records of the good stream's partition (same key), which then
    # flowed on to the workflow start above.
    assert sorted(int(dict(r.headers)["original_offset"]) for r in got) == [0, 1]
    assert len({dict(r.headers)["original_partition"] for r in got}) == 1


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


@pytest.mark.parametrize("event_type_header", [True, False], ids=["header", "no-header"])
async def test_agents_route_by_the_event_type_header_or_else_by_the_value(
    setup: Setup,
    temporal_client: Client,
    kafka_bootstrap: str,
    tmp_path: Path,
    dev_layout: DevLayout,
    event_type_header: bool,
) -> None:
    """Records as the reader writes them, with the ``event_type`` header (header) and as
    an older reader did, without it (no-header): the chain runs either way. Beside them,
    records written by hand with a plain producer: an initiated event whose header says
    another type (a lying header), and a value that is not JSON behind an initiated
    header. Both are dead-lettered once; nothing acts on the lying one (no pending job
    for its organization), which also shows the headers reach the agents through Faust."""
    settings = setup.settings
    dsn = settings.database_url.get_secret_value()
    org, liar = uuid.uuid4(), uuid.uuid4()
    async with services(
        setup, temporal_client, kafka_bootstrap, event_type_header=event_type_header
    ) as feeder:
        env = _env(settings, dev_layout.temporal_address, settings.consumer_group, tmp_path)
        with running_app(env, tmp_path) as app:
            lying = (
                b'{"id":"%s","stream_id":"%s","stream_type":"organization","stream_version":1,'
                b'"event_type":"organization.bootstrap.initiated","event_data":{"name":"Liar",'
                b'"subdomain":"liar","admins":[{"email":"ada@example.com",'
                b'"role":"organization_admin"}]},"event_metadata":{"source":"api"},'
                b'"idempotency_key":null,"created_at":"2026-01-01T00:00:00+00:00"}'
            ) % (str(uuid.uuid4()).encode(), str(liar).encode())
            await feeder.send(
                str(liar).encode(),
                lying,
                [*feeder.next_headers(), ("event_type", b"invitation.email.sent")],
            )
            await feeder.send(
                str(liar).encode(),
                b"{not json",
                [*feeder.next_headers(), ("event_type", ev.BOOTSTRAP_INITIATED.encode())],
            )
            job_id = emit_initiated(dsn, org, f"hdr-{org.hex[:8]}")

            async def chain_done() -> bool:
                row = queue_row(dsn, job_id)
                return (
                    row is not None
                    and row[3] is not None
                    and len(feeder.produced) == 4
                    and await all_consumed(app, 6)
                )

            await eventually(chain_done, "initiated → … → workflow_started", app)
            assert all(
                any(name == "event_type" for name, _ in headers) == event_type_header
                for _, _, headers in feeder.produced
            )
            assert [e[0] for e in stream_events(dsn, org)] == [
                ev.BOOTSTRAP_INITIATED,
                ev.QUEUE_PENDING,
                ev.QUEUE_CLAIMED,
                ev.BOOTSTRAP_WORKFLOW_STARTED,
            ]
            assert app.metric("pipeline_workflow_starts_total", outcome="started") == 1
            assert app.metric("pipeline_events_dead_lettered_total", reason="bad_headers") == 1
            assert app.metric("pipeline_events_dead_lettered_total", reason="bad_value") == 1
            assert stream_events(dsn, liar) == []  # the enqueue agent never acted on it

    got = await read_dead_letters(kafka_bootstrap, settings.dead_letter_topic, 2)
    assert len(got) == 2
    by_kind = {dict(r.headers)["reason_kind"]: r for r in got}
    assert set(by_kind) == {b"bad_headers", b"bad_value"}
    assert by_kind[b"bad_headers"].value == lying
    assert b"invitation.email.sent" in dict(by_kind[b"bad_headers"].headers)["reason"]
    assert by_kind[b"bad_value"].value == b"{not json"
    assert await executions(temporal_client, ev.workflow_id_for(str(liar))) == []


async def test_a_job_is_not_dropped_while_temporal_is_unreachable(
    setup: Setup,
    temporal_client: Client,
    kafka_bootstrap: str,
    tmp_path: Path,
    dev_layout: DevLayout,
) -> None:
    settings = setup.settings
    org = uuid.uuid4()
    workflow_id = ev.workflow_id_for(str(org))
    with socket.socket() as closed:  # a port nobody listens on: Temporal "down"
        closed.bind(("127.0.0.1", 0))
        down = f"127.0.0.1:{closed.getsockname()[1]}"
    async with services(setup, temporal_client, kafka_bootstrap) as feeder:
        env = _env(settings, down, settings.consumer_group, tmp_path)
        with running_app(env, tmp_path) as app:
            job_id = emit_initiated(
                settings.database_url.get_secret_value(), org, f"down-{org.hex[:8]}"
            )

            async def retrying() -> bool:
                return app.metric("pipeline_workflow_starts_total", outcome="failed") >= 2

            await eventually(retrying, "start attempts against an unreachable Temporal", app)
            types = [e[0] for e in stream_events(settings.database_url.get_secret_value(), org)]
            assert types == [ev.BOOTSTRAP_INITIATED, ev.QUEUE_PENDING, ev.QUEUE_CLAIMED]
            assert await executions(temporal_client, workflow_id) == []
        # The same process restarted (same group, instance id and web port, as a pod keeps
        # them; Faust's assignor asserts that a static member's web URL did not change),
        # now with Temporal reachable: the unacked pending job comes back.
        env = {**env, "PIPELINE_TEMPORAL_ADDRESS": dev_layout.temporal_address}
        with running_app(env, tmp_path) as again:

            async def started() -> bool:
                row = queue_row(settings.database_url.get_secret_value(), job_id)
                return row is not None and row[3] is not None

            await eventually(started, "the start after Temporal came back", again)
    types = [e[0] for e in stream_events(settings.database_url.get_secret_value(), org)]
    assert types == [
        ev.BOOTSTRAP_INITIATED,
        ev.QUEUE_PENDING,
        ev.QUEUE_CLAIMED,
        ev.BOOTSTRAP_WORKFLOW_STARTED,
    ]
    assert len(await executions(temporal_client, workflow_id)) == 1
    assert len(feeder.produced) == 4
