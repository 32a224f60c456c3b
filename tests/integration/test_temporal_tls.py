"""Temporal over mutual TLS: the pipeline, configured only from the environment, against
Temporal's real server serving a certificate the test made.

The server is Temporal's own, built from its Go module and started with TLS on its
frontend (a client certificate of the test's CA required) and between its services:
:mod:`tests.integration.temporal_tls_server`. What the pipeline did is checked from the
outside: exit codes and lines of the CLI, and temporalio's own client over the same TLS.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from temporalio.client import WorkflowExecutionStatus
from temporalio.worker import Worker

from pipeline import events
from pipeline.dev.layout import DevLayout
from pipeline.security import TemporalSecurity, connect_temporal
from tests.integration.pipeline_process import (
    INVITATION_KEY,
    event_types,
    eventually,
    pipeline_cli,
    pipeline_env,
    slot_active,
    start_pipeline,
    stop_pipeline,
)
from tests.integration.probe_workflow import ShoutWorkflow, shout
from tests.integration.temporal_tls_server import (
    TemporalTlsServer,
    start_temporal_tls_server,
    stop_temporal_tls_server,
)
from tests.integration.test_end_to_end import emit_bootstrap

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
async def temporal_tls(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[TemporalTlsServer]:
    server = await start_temporal_tls_server(tmp_path_factory.mktemp("temporal-tls-server"))
    try:
        yield server
    finally:
        stop_temporal_tls_server(server)


def services_env(dev_layout: DevLayout) -> dict[str, str]:
    return {
        "PIPELINE_DATABASE_URL": dev_layout.database_url,
        "PIPELINE_KAFKA_BOOTSTRAP_SERVERS": dev_layout.kafka_bootstrap,
        # The worker refuses to start without its invitation key (before any handshake).
        "PIPELINE_INVITATION_KEY": INVITATION_KEY,
    }


async def cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [pipeline_cli(), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [pipeline_cli(), "worker"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def temporal_line(output: str) -> str:
    (line,) = [line for line in output.splitlines() if "temporal" in line.lower()]
    return line


async def test_check_reaches_the_tls_server_with_a_client_certificate(
    dev_layout: DevLayout, temporal_tls: TemporalTlsServer
) -> None:
    result = await cli(["check"], services_env(dev_layout) | temporal_tls.env())
    line = temporal_line(result.stdout)
    assert "namespace default reachable" in line, result.stdout + result.stderr
    assert line.startswith("ok"), line


@pytest.mark.parametrize("certificate", ["none", "of-an-untrusted-ca"])
async def test_a_missing_or_untrusted_client_certificate_fails_the_handshake_with_exit_2(
    dev_layout: DevLayout, temporal_tls: TemporalTlsServer, certificate: str
) -> None:
    env = services_env(dev_layout) | {
        "PIPELINE_TEMPORAL_ADDRESS": temporal_tls.address,
        "PIPELINE_TEMPORAL_TLS_CA_FILE": str(temporal_tls.ca),
    }
    if certificate != "none":
        env["PIPELINE_TEMPORAL_TLS_CERT_FILE"] = str(temporal_tls.stranger_cert)
        env["PIPELINE_TEMPORAL_TLS_KEY_FILE"] = str(temporal_tls.stranger_key)
    result = await cli(["check"], env)
    assert result.returncode == 2, result.stdout + result.stderr
    line = temporal_line(result.stdout)
    assert "TLS handshake failed" in line, line
    assert temporal_tls.address in line
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize("command", ["check", "worker"])
async def test_an_untrusted_server_certificate_is_one_line_and_exit_2(
    dev_layout: DevLayout, temporal_tls: TemporalTlsServer, command: str
) -> None:
    env = services_env(dev_layout) | temporal_tls.env(ca=temporal_tls.untrusted_ca)
    result = await cli([command], env)
    assert result.returncode == 2, result.stdout + result.stderr
    output = result.stdout if command == "check" else result.stderr
    lines = [line for line in output.splitlines() if "certificate verify failed" in line]
    assert len(lines) == 1, output
    assert "PIPELINE_TEMPORAL_TLS_CA_FILE" in lines[0]
    assert "Traceback" not in result.stdout + result.stderr


async def test_the_pipelines_client_runs_a_workflow_with_an_api_key(
    temporal_tls: TemporalTlsServer,
) -> None:
    # The server has no authorizer: the API key is sent (as on Temporal Cloud) and ignored.
    security = TemporalSecurity(
        tls=True,
        ca_file=str(temporal_tls.ca),
        cert_file=str(temporal_tls.client_cert),
        key_file=str(temporal_tls.client_key),
        api_key=SecretStr("test-api-key"),
    )
    client = await connect_temporal(temporal_tls.address, "default", security)
    assert client.service_client.config.api_key == "test-api-key"
    queue = f"tls-{uuid.uuid4().hex[:8]}"
    workflow_id = f"tls-{uuid.uuid4()}"
    async with Worker(client, task_queue=queue, workflows=[ShoutWorkflow], activities=[shout]):
        result = await client.execute_workflow(
            ShoutWorkflow.run, "over tls", id=workflow_id, task_queue=queue
        )
    assert result == "OVER TLS"
    # Seen by temporalio's own client, with only the client certificate.
    own = await temporal_tls.client()
    described = await own.get_workflow_handle(workflow_id).describe()
    assert described.status == WorkflowExecutionStatus.COMPLETED


async def test_a_bootstrap_runs_through_run_and_worker_over_mutual_tls(
    dev_layout: DevLayout, temporal_tls: TemporalTlsServer, fresh_db: str, tmp_path: Path
) -> None:
    # `pipeline run` (reader + agents: the agents start the workflow) and `pipeline worker`
    # (runs it), both processes, reach Temporal only through the variables.
    env = pipeline_env(fresh_db, dev_layout.kafka_bootstrap, temporal_tls.address, tmp_path)
    env |= temporal_tls.env()
    worker_log = tmp_path / "worker.log"
    worker = start_worker(env, worker_log)
    running = start_pipeline(env, tmp_path)
    org = uuid.uuid4()
    try:
        slot = running.settings.slot_name
        await eventually(lambda: slot_active(fresh_db, slot), "the reader", running)
        emit_bootstrap(fresh_db, org, "stream")

        def completed() -> bool:
            assert worker.poll() is None, worker_log.read_text(errors="replace")
            return events.QUEUE_COMPLETED in event_types(fresh_db, org)

        await eventually(completed, f"bootstrap of {org} over mutual TLS", running, timeout=240)
    finally:
        stop_pipeline(running)
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
    assert events.BOOTSTRAP_COMPLETED in event_types(fresh_db, org)
    own = await temporal_tls.client()
    handle = own.get_workflow_handle(events.workflow_id_for(str(org)))
    described = await handle.describe()
    assert described.status == WorkflowExecutionStatus.COMPLETED
    assert described.task_queue == env["PIPELINE_TEMPORAL_TASK_QUEUE"]
