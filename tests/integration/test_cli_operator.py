"""Issue 15 item 6 against the real services: the CLI's clear exits as an operator meets them.

Each case runs the installed ``pipeline`` command as a subprocess and checks its exit
code and what it printed; Kafka and PostgreSQL are checked with their own clients.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from pipeline.dev.layout import DevLayout

pytestmark = pytest.mark.integration

PIPELINE = str(Path(sys.executable).parent / "pipeline")


def pipeline(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    return subprocess.run(
        [PIPELINE, *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def settings_env(layout: DevLayout, dsn: str, **extra: str) -> dict[str, str]:
    return {
        "PIPELINE_DATABASE_URL": dsn,
        "PIPELINE_KAFKA_BOOTSTRAP_SERVERS": layout.kafka_bootstrap,
        "PIPELINE_TEMPORAL_ADDRESS": layout.temporal_address,
        **extra,
    }


async def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def test_a_topic_with_another_partition_count_stops_run_with_exit_2_and_fails_check(
    dev_layout: DevLayout, fresh_db: str
) -> None:
    topic = f"cli-layout-{uuid.uuid4().hex[:8]}"
    await create_topic(dev_layout.kafka_bootstrap, topic, 3)
    env = settings_env(
        dev_layout,
        fresh_db,
        PIPELINE_TOPIC=topic,
        PIPELINE_DEAD_LETTER_TOPIC=f"{topic}-dlq",
        PIPELINE_TOPIC_PARTITIONS="8",
        PIPELINE_SLOT_NAME=f"s_{uuid.uuid4().hex[:8]}",
    )
    checked = await asyncio.to_thread(pipeline, "check", env=env)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert f"topic {topic} has 3 partitions, but PIPELINE_TOPIC_PARTITIONS is 8" in checked.stdout
    ran = await asyncio.to_thread(pipeline, "run", env=env)
    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert "Traceback" not in ran.stderr
    assert f"topic {topic} has 3 partitions" in ran.stderr
    assert "set it to 3" in ran.stderr


async def test_status_with_kafka_down_still_shows_the_slot_lag(
    dev_layout: DevLayout, fresh_db: str
) -> None:
    slot = f"s_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
    env = settings_env(
        dev_layout,
        fresh_db,
        PIPELINE_SLOT_NAME=slot,
        PIPELINE_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9",
    )
    result = await asyncio.to_thread(pipeline, "status", env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"slot      {slot}: confirmed" in result.stdout
    assert "lag " in result.stdout and "bytes" in result.stdout
    assert "queue     pending=0" in result.stdout
    assert "Traceback" not in result.stderr
    assert "kafka unavailable: Kafka is unreachable at 127.0.0.1:9" in result.stderr


async def test_emit_refused_by_the_contract_writes_nothing(
    dev_layout: DevLayout, fresh_db: str
) -> None:
    env = settings_env(dev_layout, fresh_db)
    args = ("emit", "bootstrap", "--name", "Acme", "--admin", "not-an-email")
    refused = await asyncio.to_thread(pipeline, *args, "--subdomain", "acme", env=env)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "event_data.admins" in refused.stderr
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT count(*) FROM domain_events").fetchone() == (0,)
    ok = ("emit", "bootstrap", "--name", "Acme", "--subdomain", "acme", "--admin", "a@acme.test")
    emitted = await asyncio.to_thread(pipeline, *ok, "--signature", "aggregate", env=env)
    assert emitted.returncode == 0, emitted.stderr
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT count(*) FROM domain_events").fetchone() == (1,)
