"""Temporal over TLS and mutual TLS: the pipeline's clients, configured from the
environment, against a certificate the test made.

The dev server has no TLS options (``temporal server start-dev --help``), so TLS is
terminated by :mod:`tests.integration.tls_proxy` in front of it; see that module.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.worker import Worker

from pipeline.dev.layout import DevLayout
from pipeline.security import TemporalSecurity, connect_temporal
from tests.integration.pipeline_process import pipeline_cli
from tests.integration.probe_workflow import ShoutWorkflow, shout
from tests.integration.secure_broker import issue, make_ca
from tests.integration.tls_proxy import TlsProxy, start_tls_proxy

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("temporal-pki")
    ca = make_ca(root, "temporal-ca")
    untrusted, _ = make_ca(root, "untrusted-ca")
    server = issue(root, ca, "frontend", "IP:127.0.0.1,DNS:localhost")
    client = issue(root, ca, "worker", "DNS:pipeline-worker")
    return {
        "ca": ca[0],
        "untrusted": untrusted,
        "server_cert": server[0],
        "server_key": server[1],
        "client_cert": client[0],
        "client_key": client[1],
    }


@pytest.fixture
async def mtls_proxy(dev_layout: DevLayout, pki: dict[str, Path]) -> AsyncIterator[TlsProxy]:
    proxy = await start_tls_proxy(
        dev_layout.temporal_address, pki["server_cert"], pki["server_key"], client_ca=pki["ca"]
    )
    yield proxy
    await proxy.close()


def tls_env(proxy: TlsProxy, pki: dict[str, Path], ca: str = "ca") -> dict[str, str]:
    return {
        "PIPELINE_TEMPORAL_ADDRESS": proxy.address,
        "PIPELINE_TEMPORAL_TLS_CA_FILE": str(pki[ca]),
        "PIPELINE_TEMPORAL_TLS_CERT_FILE": str(pki["client_cert"]),
        "PIPELINE_TEMPORAL_TLS_KEY_FILE": str(pki["client_key"]),
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


async def test_a_workflow_runs_over_mutual_tls_with_an_api_key(
    mtls_proxy: TlsProxy, pki: dict[str, Path]
) -> None:
    security = TemporalSecurity(
        tls=True,
        ca_file=str(pki["ca"]),
        cert_file=str(pki["client_cert"]),
        key_file=str(pki["client_key"]),
        api_key="test-api-key",
    )
    client = await connect_temporal(mtls_proxy.address, "default", security)
    assert client.service_client.config.api_key == "test-api-key"
    assert client.service_client.config.tls
    queue = f"tls-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=queue, workflows=[ShoutWorkflow], activities=[shout]):
        result = await client.execute_workflow(
            ShoutWorkflow.run, "over tls", id=f"tls-{uuid.uuid4()}", task_queue=queue
        )
    assert result == "OVER TLS"
    assert mtls_proxy.failures == []


async def test_check_reaches_temporal_over_mtls(
    dev_layout: DevLayout, mtls_proxy: TlsProxy, pki: dict[str, Path]
) -> None:
    env = {
        "PIPELINE_DATABASE_URL": dev_layout.database_url,
        "PIPELINE_KAFKA_BOOTSTRAP_SERVERS": dev_layout.kafka_bootstrap,
        **tls_env(mtls_proxy, pki),
    }
    result = await cli(["check"], env)
    (line,) = [line for line in result.stdout.splitlines() if "temporal" in line]
    assert "namespace default reachable" in line, result.stdout + result.stderr


@pytest.mark.parametrize("command", ["check", "worker"])
async def test_an_untrusted_frontend_certificate_is_one_line_and_exit_2(
    dev_layout: DevLayout, mtls_proxy: TlsProxy, pki: dict[str, Path], command: str
) -> None:
    env = {
        "PIPELINE_DATABASE_URL": dev_layout.database_url,
        "PIPELINE_KAFKA_BOOTSTRAP_SERVERS": dev_layout.kafka_bootstrap,
        # The worker refuses to start without its invitation key (before any handshake).
        "PIPELINE_INVITATION_KEY": "a-test-only-invitation-key-of-at-least-32-bytes",
        **tls_env(mtls_proxy, pki, ca="untrusted"),
    }
    result = await cli([command], env)
    assert result.returncode == 2, result.stdout + result.stderr
    output = result.stdout if command == "check" else result.stderr
    lines = [line for line in output.splitlines() if "certificate verify failed" in line]
    assert len(lines) == 1, output
    assert "Traceback" not in result.stdout + result.stderr


async def test_without_a_client_certificate_the_mtls_handshake_fails_with_exit_2(
    dev_layout: DevLayout, mtls_proxy: TlsProxy, pki: dict[str, Path]
) -> None:
    env = {
        "PIPELINE_DATABASE_URL": dev_layout.database_url,
        "PIPELINE_KAFKA_BOOTSTRAP_SERVERS": dev_layout.kafka_bootstrap,
        "PIPELINE_TEMPORAL_ADDRESS": mtls_proxy.address,
        "PIPELINE_TEMPORAL_TLS_CA_FILE": str(pki["ca"]),
    }
    result = await cli(["check"], env)
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = [line for line in result.stdout.splitlines() if "temporal" in line]
    assert "TLS handshake failed" in line, line
