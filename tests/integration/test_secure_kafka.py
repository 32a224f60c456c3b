"""Every Kafka client of the pipeline through a secured broker (SASL_SSL, SSL, SASL_PLAINTEXT).

The broker is this module's own (``secure_broker``): KRaft, SCRAM users created at
format time, a CA and certificates made for the test. The pipeline is configured only
through its ``PIPELINE_KAFKA_*`` variables, as an operator would; what it wrote is read
back with a plain aiokafka consumer using the same listener.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from temporalio.client import Client

from pipeline import events
from pipeline.bootstrap.settings import from_env
from pipeline.bootstrap.worker import build_worker
from pipeline.dev.layout import DevLayout
from replication.kafka_client import KafkaSecurity, client_options
from tests.integration.kafka_helpers import read_topic
from tests.integration.pipeline_process import (
    RunningPipeline,
    event_types,
    eventually,
    pipeline_cli,
    pipeline_env,
    start_pipeline,
    stop_pipeline,
)
from tests.integration.secure_broker import SecureBroker, issue, make_ca, start_secure_broker
from tests.integration.test_end_to_end import emit_bootstrap
from tests.integration.tls_proxy import start_tls_proxy

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SecureBroker]:
    broker = await start_secure_broker(tmp_path_factory.mktemp("secure-kafka"))
    try:
        yield broker
    finally:
        broker.stop()


async def cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [pipeline_cli(), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


async def wait_for_topic(
    bootstrap: str, topic: str, security: KafkaSecurity, timeout: float = 120
) -> None:
    """Until the reader created ``topic``: a consumer subscribing first would have the
    broker auto-create it with one partition, which the reader refuses (replication.topics).
    Listing the topics creates none."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_options(security))
    await admin.start()
    try:
        async with asyncio.timeout(timeout):
            while topic not in await admin.list_topics():
                await asyncio.sleep(0.2)
    finally:
        await admin.close()


def start_reader(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [pipeline_cli(), "reader"], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )


def secured_env(
    broker: SecureBroker,
    dsn: str,
    temporal: str,
    tmp: Path,
    protocol: str = "SASL_SSL",
    mechanism: str = "SCRAM-SHA-512",
) -> dict[str, str]:
    env = pipeline_env(dsn, broker.bootstrap(protocol), temporal, tmp)
    return env | broker.env(protocol, mechanism)


@pytest.fixture(scope="module")
async def temporal_mtls(
    dev_layout: DevLayout, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, str]]:
    """The dev Temporal behind mutual TLS: the ``PIPELINE_TEMPORAL_*`` that reach it."""
    root = tmp_path_factory.mktemp("temporal-mtls")
    ca = make_ca(root, "temporal-ca")
    server = issue(root, ca, "frontend", "IP:127.0.0.1")
    client = issue(root, ca, "pipeline", "DNS:pipeline")
    proxy = await start_tls_proxy(dev_layout.temporal_address, *server, client_ca=ca[0])
    yield {
        "PIPELINE_TEMPORAL_ADDRESS": proxy.address,
        "PIPELINE_TEMPORAL_TLS_CA_FILE": str(ca[0]),
        "PIPELINE_TEMPORAL_TLS_CERT_FILE": str(client[0]),
        "PIPELINE_TEMPORAL_TLS_KEY_FILE": str(client[1]),
    }
    await proxy.close()


async def test_reader_agents_replay_status_and_check_through_sasl_ssl(
    secure_broker: SecureBroker,
    temporal_mtls: dict[str, str],
    fresh_db: str,
    temporal_client: Client,
    tmp_path: Path,
) -> None:
    # Kafka through SASL_SSL with SCRAM-SHA-512; the agents' workflow starts through
    # mutual TLS (the bootstrap worker polls the dev server directly).
    env = secured_env(
        secure_broker, fresh_db, temporal_client.service_client.config.target_host, tmp_path
    )
    env |= temporal_mtls
    org = uuid.uuid4()
    worker = build_worker(temporal_client, from_env(env))
    running: RunningPipeline = start_pipeline(env, tmp_path)
    try:
        async with worker:
            emit_bootstrap(fresh_db, org, "stream")
            # The reader produced it, the agents consumed it and started the workflow,
            # whose activities' events came back through the reader and the agents.
            await eventually(
                lambda: events.QUEUE_COMPLETED in event_types(fresh_db, org),
                f"bootstrap of {org} through SASL_SSL",
                running,
                timeout=240,
            )

            def projected() -> bool:
                with psycopg.connect(fresh_db) as conn:
                    row = conn.execute(
                        "SELECT status FROM workflow_queue_projection WHERE stream_id = %s",
                        (org,),
                    ).fetchone()
                return row == ("completed",)

            await eventually(projected, "the queue projection of the secured run", running)

            async def consumed() -> bool:
                # The agents commit on an interval, and a stop does not wait for records
                # in flight (they are delivered again): the group has consumed everything
                # only once `status` says so, read while the pipeline still runs.
                status = await cli(["status", "--json"], env)
                return status.returncode == 0 and '"total_lag": 0' in status.stdout

            await eventually(consumed, "the agents' group to consume every record", running)
    finally:
        stop_pipeline(running)
    assert "SaslAuthenticationFailed" not in running.log.read_text(errors="replace")

    with psycopg.connect(fresh_db) as conn:
        row = conn.execute("SELECT count(*) FROM domain_events").fetchone()
    total = int(row[0]) if row else 0
    records = await read_topic(
        secure_broker.sasl_ssl, env["PIPELINE_TOPIC"], total, security=secure_broker.security()
    )
    mine = [r for r in records if r.key == str(org).encode()]
    assert [r.row["event_type"] for r in mine][:1] == [events.BOOTSTRAP_INITIATED]
    assert len(records) == total

    replay = await cli(["replay", "--from-lsn", "0/0", "--dry-run"], env)
    assert replay.returncode == 0, replay.stderr
    assert f"scanned {total} record(s)" in replay.stdout
    status = await cli(["status", "--json"], env)
    assert status.returncode == 0, status.stderr
    assert '"total_lag": 0' in status.stdout, status.stdout
    check = await cli(["check"], env)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "kafka" in check.stdout and "namespace default reachable" in check.stdout


@pytest.mark.parametrize(
    ("protocol", "mechanism"),
    [
        ("SASL_SSL", "SCRAM-SHA-256"),
        ("SASL_SSL", "PLAIN"),
        ("SSL", ""),
        ("SASL_PLAINTEXT", "PLAIN"),
    ],
)
async def test_reader_produces_through_each_listener(
    secure_broker: SecureBroker,
    fresh_db: str,
    temporal_client: Client,
    tmp_path: Path,
    protocol: str,
    mechanism: str,
) -> None:
    env = secured_env(
        secure_broker,
        fresh_db,
        temporal_client.service_client.config.target_host,
        tmp_path,
        protocol,
        mechanism,
    )
    org = uuid.uuid4()
    emit_bootstrap(fresh_db, org, "stream")
    log = tmp_path / "reader.log"
    proc = start_reader(env, log)
    try:
        security = secure_broker.security(protocol)
        if mechanism:
            security = secure_broker.security(protocol, sasl_mechanism=mechanism)
        await wait_for_topic(secure_broker.bootstrap(protocol), env["PIPELINE_TOPIC"], security)
        records = await read_topic(
            secure_broker.bootstrap(protocol), env["PIPELINE_TOPIC"], 1, security=security
        )
    finally:
        proc.terminate()
        proc.wait(60)
    assert [r.key for r in records] == [str(org).encode()], log.read_text(errors="replace")


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("PIPELINE_KAFKA_SASL_PASSWORD", "wrong-password", "SASL authentication failed"),
        ("PIPELINE_KAFKA_SSL_CA_FILE", "untrusted", "certificate verify failed"),
    ],
)
@pytest.mark.parametrize("command", ["check", "status", "reader"])
async def test_a_refused_handshake_is_one_line_and_exit_2(
    secure_broker: SecureBroker,
    fresh_db: str,
    temporal_client: Client,
    tmp_path: Path,
    variable: str,
    value: str,
    reason: str,
    command: str,
) -> None:
    env = secured_env(
        secure_broker, fresh_db, temporal_client.service_client.config.target_host, tmp_path
    )
    env[variable] = str(secure_broker.untrusted_ca) if value == "untrusted" else value
    result = await cli([command], env)
    assert result.returncode == 2, result.stdout + result.stderr
    output = result.stdout if command == "check" else result.stderr
    lines = [line for line in output.splitlines() if reason in line]
    assert len(lines) == 1, output
    assert "Traceback" not in result.stdout + result.stderr
    if command != "check":
        assert result.stderr.strip() == lines[0].strip()
