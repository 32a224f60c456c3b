"""Issue 15 item 2: `pipeline check` finds a real PgBouncer (transaction mode) by asking the
server, on a non-standard port and on PgBouncer's own 6432, and passes the direct server."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.dev.layout import DevLayout
from tests.integration.pgbouncer import DEFAULT_PORT, pgbouncer

pytestmark = pytest.mark.integration

PIPELINE = str(Path(sys.executable).parent / "pipeline")


def check(layout: DevLayout, dsn: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env = {
        "PIPELINE_DATABASE_URL": dsn,
        "PIPELINE_KAFKA_BOOTSTRAP_SERVERS": layout.kafka_bootstrap,
        "PIPELINE_TEMPORAL_ADDRESS": layout.temporal_address,
    }
    return subprocess.run(
        [PIPELINE, "check"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def postgres_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stdout.splitlines() if " postgres " in line]
    assert len(lines) == 1, result.stdout + result.stderr
    return lines[0]


@pytest.mark.parametrize("port", [None, DEFAULT_PORT], ids=["free-port", "6432"])
async def test_check_fails_on_a_real_pgbouncer_naming_the_evidence(
    dev_layout: DevLayout, fresh_db: str, port: int | None
) -> None:
    dbname = fresh_db.rsplit("/", 1)[1]
    with pgbouncer(upstream_port=dev_layout.pg_port, port=port) as bouncer:
        assert port is None or bouncer.port == port
        result = await asyncio.to_thread(check, dev_layout, bouncer.dsn(dbname))
    assert result.returncode == 1, result.stdout + result.stderr
    line = postgres_line(result)
    assert "FAIL" in line
    assert "a connection pooler answers" in line
    assert "connections are pooled" in line
    assert "unsupported startup parameter: replication" in line
    assert "DIRECT host" in line
    assert "Traceback" not in result.stderr


async def test_check_passes_the_direct_server(dev_layout: DevLayout, fresh_db: str) -> None:
    result = await asyncio.to_thread(check, dev_layout, fresh_db)
    line = postgres_line(result)
    assert "ok" in line and "no pooler" in line, result.stdout + result.stderr
    assert "system " in line
