"""A server with ``wal_level=replica`` is refused with an error that names the setting and
the fix, by the reader in process and by `pipeline reader` (exit 2)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.dev.layout import DevLayout
from pipeline.dev.postgres import Postgres
from pipeline.migrate import migrate
from replication.errors import WalLevelError
from replication.reader import Reader, ReaderConfig
from tests.integration.pipeline_process import free_port
from tests.integration.reader_crash_harness import (
    PIPELINE,
    reader_env,
)

pytestmark = pytest.mark.integration


async def test_wal_level_not_logical_is_a_clear_error(
    dev_layout: DevLayout, tmp_path: Path
) -> None:
    layout = replace(dev_layout, state_dir=tmp_path / "replica-cluster", pg_port=free_port())
    server = Postgres(
        layout,
        settings={"wal_level": "replica", "shared_buffers": "32MB", "max_connections": "20"},
    )
    try:
        await asyncio.to_thread(server.start)
        await asyncio.to_thread(server.wait_healthy)
        dsn = layout.database_url
        await asyncio.to_thread(migrate, dsn)
        config = ReaderConfig(dsn=dsn, kafka_bootstrap=dev_layout.kafka_bootstrap)
        with pytest.raises(WalLevelError) as caught:
            await Reader(config).run(asyncio.Event())
        message = str(caught.value)
        assert "wal_level is 'replica'" in message
        assert "wal_level = logical" in message and "restart PostgreSQL" in message

        # The same through the CLI: exit code 2 (configuration), the message on stderr.
        env = reader_env(dsn, dev_layout.kafka_bootstrap, "domain-events", "pipeline")
        result = await asyncio.to_thread(
            subprocess.run, [str(PIPELINE), "reader"], env=env, capture_output=True, text=True
        )
        assert result.returncode == 2, result.stderr
        assert "wal_level = logical" in result.stderr
    finally:
        await asyncio.to_thread(server.stop)
        shutil.rmtree(server.root, ignore_errors=True)
