"""A production-shaped Temporal for the full-load benchmark: the real server on PostgreSQL.

The dev server (``temporal server start-dev``, SQLite) serialises its writes and takes
about 50-80 workflow starts a second here, below the 100 bootstraps/s of issue 17's full
load, so at that load it, not the pipeline, would be measured. This module runs Temporal's
own server (built from its Go module by ``scripts/temporal/build-server.sh``, never a
downloaded binary) with the persistence production uses: PostgreSQL, in two databases of
its own on the dev cluster (``temporal_bench`` and ``temporal_bench_visibility``), the
schemas applied by the module's ``temporal-sql-tool`` from ``schema/postgresql/v12``, the
configuration shaped after the module's ``config/development-postgres12.yaml``.

Tests and the demo keep the dev server; only ``make bench`` uses this one::

    python -m bench.temporal_postgres up      # prints the frontend address
    python -m bench.temporal_postgres down

``up`` recreates both databases each time, so every benchmark starts from an empty
history store.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from temporalio.client import Client
from temporalio.service import RPCError

from pipeline.dev.layout import DevLayout, load_layout
from pipeline.dev.temporal_namespace import ensure_namespace
from pipeline.dev.temporal_server_yaml import cluster_tail, write_dynamic_config

VERSION = "1.32.1"
BUILD = "bash scripts/temporal/build-server.sh"
DATABASES = ("temporal_bench", "temporal_bench_visibility")
NAMESPACE = "default"
HISTORY_SHARDS = 4
START_TIMEOUT_S = 90.0


@dataclass(frozen=True, slots=True)
class Paths:
    """The binaries and schemas built once into the cache, and this checkout's state."""

    layout: DevLayout

    @property
    def build_dir(self) -> Path:
        return self.layout.cache_dir / f"temporal-server-{VERSION}"

    @property
    def server(self) -> Path:
        return self.build_dir / "temporal-server"

    @property
    def sql_tool(self) -> Path:
        return self.build_dir / "temporal-sql-tool"

    @property
    def schema(self) -> Path:
        return self.build_dir / "schema" / "postgresql" / "v12"

    @property
    def state(self) -> Path:
        return self.layout.state_dir / "temporal-postgres"

    @property
    def pid_file(self) -> Path:
        return self.state / "server.pid"

    @property
    def address_file(self) -> Path:
        return self.state / "address"

    @property
    def log(self) -> Path:
        return self.state / "server.log"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _free_membership_port() -> int:
    """A free port below 32768: the SQL schema stores membership ports as ``smallint``."""
    for port in random.sample(range(21000, 32000), 200):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise SystemExit("no free port in 21000-32000 for Temporal's membership ring")


def _datastore(name: str, database: str, layout: DevLayout, conns: int) -> str:
    return f"""    {name}:
      sql:
        pluginName: postgres12
        databaseName: {database}
        connectAddr: {layout.host}:{layout.pg_port}
        connectProtocol: tcp
        user: postgres
        password: ""
        maxConns: {conns}
        maxIdleConns: {conns}
        maxConnLifetime: 1h
"""


def server_config(layout: DevLayout, frontend: int, http: int, dynamic: Path) -> str:
    """The server's YAML: PostgreSQL persistence, every service on 127.0.0.1."""
    host = layout.host

    def service(name: str, grpc: int) -> str:
        http_line = f"      httpPort: {http}\n" if name == "frontend" else ""
        return f"""  {name}:
    rpc:
      grpcPort: {grpc}
      membershipPort: {_free_membership_port()}
{http_line}      bindOnIP: {host}
"""

    services = service("frontend", frontend) + "".join(
        service(name, _free_port()) for name in ("history", "matching", "worker")
    )
    return f"""log:
  stdout: true
  level: warn
persistence:
  defaultStore: postgres-default
  visibilityStore: postgres-visibility
  numHistoryShards: {HISTORY_SHARDS}
  datastores:
{_datastore("postgres-default", DATABASES[0], layout, 20)}{_datastore("postgres-visibility", DATABASES[1], layout, 4)}global:
  membership:
    maxJoinDuration: 30s
    broadcastAddress: {host}
services:
{services}{cluster_tail(host, frontend, http, dynamic)}"""


def _recreate_databases(layout: DevLayout) -> None:
    admin = f"postgresql://postgres@{layout.host}:{layout.pg_port}/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in DATABASES:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')


def _sql_tool(paths: Paths, database: str, *args: str) -> None:
    layout = paths.layout
    argv = [
        str(paths.sql_tool),
        "--plugin",
        "postgres12",
        "--endpoint",
        layout.host,
        "--port",
        str(layout.pg_port),
        "--user",
        "postgres",
        "--database",
        database,
        *args,
    ]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(
            f"temporal-sql-tool {' '.join(args)} on {database} failed "
            f"({result.returncode}):\n{result.stderr[-2000:]}"
        )


def _apply_schemas(paths: Paths) -> None:
    for database, folder in zip(DATABASES, ("temporal", "visibility"), strict=True):
        _sql_tool(paths, database, "setup-schema", "--version", "0.0")
        versioned = paths.schema / folder / "versioned"
        _sql_tool(paths, database, "update-schema", "--schema-dir", str(versioned))


def running_pid(paths: Paths) -> int | None:
    try:
        pid = int(paths.pid_file.read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _log_tail(log: Path, lines: int = 8) -> str:
    """The log's last lines, each cut short (the server logs whole stack traces)."""
    return "\n".join(line[:300] for line in log.read_text(errors="replace").splitlines()[-lines:])


async def _register_default(address: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    last: BaseException | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(
                f"Temporal's server exited ({proc.returncode}); {log}:\n{_log_tail(log)}"
            )
        try:
            await ensure_namespace(await Client.connect(address), NAMESPACE)
            return
        except (RPCError, RuntimeError) as exc:
            last = exc
            await asyncio.sleep(0.5)
    raise SystemExit(f"Temporal's server at {address} not ready in {START_TIMEOUT_S:.0f}s: {last}")


def up(layout: DevLayout | None = None) -> str:
    """Start the server on fresh databases (stopping a previous one); its address."""
    paths = Paths(layout or load_layout())
    for binary in (paths.server, paths.sql_tool):
        if not os.access(binary, os.X_OK):
            raise SystemExit(f"{binary} is missing: run `{BUILD}`")
    down(paths.layout)
    paths.state.mkdir(parents=True, exist_ok=True)
    _recreate_databases(paths.layout)
    _apply_schemas(paths)
    dynamic = write_dynamic_config(paths.state / "dynamicconfig.yaml")
    frontend = _free_port()
    config = paths.state / "temporal-server.yaml"
    config.write_text(server_config(paths.layout, frontend, _free_port(), dynamic))
    with paths.log.open("wb") as out:
        proc = subprocess.Popen(
            [str(paths.server), "--config-file", str(config), "--allow-no-auth", "start"],
            cwd=paths.state,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    paths.pid_file.write_text(str(proc.pid))
    address = f"{paths.layout.host}:{frontend}"
    try:
        asyncio.run(_register_default(address, proc, paths.log))
    except BaseException:
        down(paths.layout)
        raise
    paths.address_file.write_text(address)
    return address


def down(layout: DevLayout | None = None) -> None:
    """Stop the server if it runs (SIGTERM, then SIGKILL after 30 s)."""
    paths = Paths(layout or load_layout())
    pid = running_pid(paths)
    if pid is not None:
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and running_pid(paths) is not None:
            time.sleep(0.2)
        if running_pid(paths) is not None:
            os.killpg(pid, signal.SIGKILL)
    paths.pid_file.unlink(missing_ok=True)
    paths.address_file.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.temporal_postgres")
    parser.add_argument("command", choices=("up", "down"))
    args = parser.parse_args(argv)
    if args.command == "up":
        print(up(), flush=True)
        # temporalio's client runtime can abort the interpreter while it finalizes
        # (PyGILState_Release), turning a good start into exit 134: leave without it.
        os._exit(0)
    else:
        down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
