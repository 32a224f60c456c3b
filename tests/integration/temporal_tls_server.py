"""A real Temporal server that serves only mutual TLS, with certificates the test made.

``temporal server start-dev`` has no TLS options, so this is Temporal's own server,
built from its Go module by ``scripts/temporal/build-server.sh`` (``scripts/setup.sh``
runs it; never a downloaded binary). Its configuration is written here:

- the frontend serves TLS with a certificate for ``127.0.0.1``/``localhost`` signed by
  the test's CA and requires a client certificate of that CA
  (``global.tls.frontend.server.requireClientAuth``);
- history, matching and worker talk to each other over mutual TLS too
  (``global.tls.internode``), and the server's own system worker reaches the frontend
  with a client certificate of its own (``global.tls.systemWorker``);
- persistence is SQLite in memory (the plugin creates the schema itself), every port is
  a free one of 127.0.0.1, metrics and pprof are off.

The ``default`` namespace is registered through the TLS frontend with the client
certificate, as an operator would. A missing binary FAILS the test with the command
that builds it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.service import RPCError, TLSConfig

from pipeline.dev.layout import load_layout
from pipeline.dev.temporal_namespace import ensure_namespace
from pipeline.dev.temporal_server_yaml import cluster_tail, write_dynamic_config
from tests.integration.pipeline_process import free_port
from tests.integration.secure_broker import issue, make_ca

VERSION = "1.32.1"
BUILD = "bash scripts/temporal/build-server.sh"
NAMESPACE = "default"
START_TIMEOUT_S = 90.0


def server_binary() -> Path:
    return load_layout().cache_dir / f"temporal-server-{VERSION}" / "temporal-server"


@dataclass(frozen=True)
class TemporalTlsServer:
    """Where the server listens and the files a client needs (all PEM)."""

    address: str
    ca: Path
    untrusted_ca: Path
    client_cert: Path
    client_key: Path
    # A client certificate of the untrusted CA: the frontend must refuse it.
    stranger_cert: Path
    stranger_key: Path
    log: Path
    proc: subprocess.Popen[bytes]

    def env(self, ca: Path | None = None) -> dict[str, str]:
        """The ``PIPELINE_TEMPORAL_*`` that reach it with mutual TLS."""
        return {
            "PIPELINE_TEMPORAL_ADDRESS": self.address,
            "PIPELINE_TEMPORAL_TLS_CA_FILE": str(ca or self.ca),
            "PIPELINE_TEMPORAL_TLS_CERT_FILE": str(self.client_cert),
            "PIPELINE_TEMPORAL_TLS_KEY_FILE": str(self.client_key),
        }

    def tls(self) -> TLSConfig:
        return TLSConfig(
            server_root_ca_cert=self.ca.read_bytes(),
            client_cert=self.client_cert.read_bytes(),
            client_private_key=self.client_key.read_bytes(),
        )

    async def client(self) -> Client:
        """temporalio's own client, with the client certificate."""
        return await Client.connect(self.address, namespace=NAMESPACE, tls=self.tls())

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _sqlite(name: str) -> str:
    return f"""    {name}:
      sql:
        pluginName: sqlite
        databaseName: {name}
        connectAddr: localhost
        connectProtocol: tcp
        connectAttributes:
          mode: memory
          cache: private
        maxConns: 1
        maxIdleConns: 1
        maxConnLifetime: 1h
"""


def _service(name: str, host: str) -> str:
    return f"""  {name}:
    rpc:
      grpcPort: {free_port()}
      membershipPort: {free_port()}
      bindOnIP: {host}
"""


def server_config(
    root: Path,
    frontend: int,
    http: int,
    ca: Path,
    server: tuple[Path, Path],
    worker: tuple[Path, Path],
) -> str:
    """The server's YAML (``config.Load(WithConfigFile)``); ``host`` 127.0.0.1 only."""
    host = "127.0.0.1"
    cert, key = server
    tls_server = f"""        certFile: {cert}
        keyFile: {key}
        requireClientAuth: true
        clientCaFiles: [{ca}]"""
    tls_client = f"""        serverName: localhost
        rootCaFiles: [{ca}]"""
    dynamic = write_dynamic_config(root / "dynamicconfig.yaml")
    services = "".join(_service(name, host) for name in ("history", "matching", "worker"))
    return f"""log:
  stdout: true
  level: warn
persistence:
  defaultStore: sqlite-default
  visibilityStore: sqlite-visibility
  numHistoryShards: 1
  datastores:
{_sqlite("sqlite-default")}{_sqlite("sqlite-visibility")}global:
  membership:
    maxJoinDuration: 30s
    broadcastAddress: {host}
  tls:
    frontend:
      server:
{tls_server}
      client:
{tls_client}
    internode:
      server:
{tls_server}
      client:
{tls_client}
    systemWorker:
      certFile: {worker[0]}
      keyFile: {worker[1]}
      client:
{tls_client}
services:
  frontend:
    rpc:
      grpcPort: {frontend}
      membershipPort: {free_port()}
      httpPort: {http}
      bindOnIP: {host}
{services}{cluster_tail(host, frontend, http, dynamic)}"""


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            args, cwd=log.parent, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


async def _register_default(server: TemporalTlsServer) -> None:
    """Connect with the client certificate (retrying while the server starts), register
    ``default``, and wait until the frontend serves it."""
    deadline = time.monotonic() + START_TIMEOUT_S
    last: BaseException | None = None
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            pytest.fail(
                f"Temporal's server exited ({server.proc.returncode}) while starting; "
                f"its log {server.log}:\n{server.log_tail()}"
            )
        try:
            await ensure_namespace(await server.client(), NAMESPACE)
            return
        except (RPCError, RuntimeError) as exc:
            last = exc
            await asyncio.sleep(0.5)
    pytest.fail(
        f"Temporal's TLS server at {server.address} not ready in {START_TIMEOUT_S:.0f}s "
        f"({last}); its log {server.log}:\n{server.log_tail()}"
    )


async def start_temporal_tls_server(root: Path) -> TemporalTlsServer:
    binary = server_binary()
    if not os.access(binary, os.X_OK):
        pytest.fail(f"Temporal's server is not built ({binary} missing): run `{BUILD}`")
    ca = make_ca(root, "temporal-ca")
    untrusted = make_ca(root, "untrusted-ca")
    stranger = issue(root, untrusted, "stranger", "DNS:stranger")
    frontend_cert = issue(root, ca, "temporal-frontend", "IP:127.0.0.1,DNS:localhost")
    worker_cert = issue(root, ca, "temporal-system-worker", "DNS:temporal-system-worker")
    client_cert = issue(root, ca, "pipeline", "DNS:pipeline")
    frontend = free_port()
    config = root / "temporal-server.yaml"
    config.write_text(server_config(root, frontend, free_port(), ca[0], frontend_cert, worker_cert))
    log = root / "temporal-server.log"
    proc = _spawn([str(binary), "--config-file", str(config), "--allow-no-auth", "start"], log)
    server = TemporalTlsServer(
        f"127.0.0.1:{frontend}",
        ca[0],
        untrusted[0],
        client_cert[0],
        client_cert[1],
        stranger[0],
        stranger[1],
        log,
        proc,
    )
    try:
        await _register_default(server)
    except BaseException:
        _stop(proc)
        raise
    return server


def stop_temporal_tls_server(server: TemporalTlsServer) -> None:
    _stop(server.proc)
