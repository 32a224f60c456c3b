"""The reader's start-up against real services: a pooler refusal leaves nothing behind,
the holder is named in pg_stat_activity, a broker outage at start is waited out."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from replication.reader import Reader, ReaderConfig
from tests.integration.pgbouncer import pgbouncer

pytestmark = pytest.mark.integration

PIPELINE = Path(sys.executable).parent / "pipeline"


def _config(dsn: str, bootstrap: str, **kw: object) -> ReaderConfig:
    suffix = uuid.uuid4().hex[:10]
    base: dict[str, object] = {
        "dsn": dsn,
        "kafka_bootstrap": bootstrap,
        "topic": f"start-{suffix}",
        "dead_letter_topic": f"start-{suffix}-dlq",
        "partitions": 2,
        "slot": f"start_{suffix}",
        "status_interval": 0.2,
        "initial_snapshot": False,
    }
    base.update(kw)
    return ReaderConfig(**base)  # type: ignore[arg-type]


async def _wait_for(predicate: object, timeout: float = 60, about: object = None) -> None:
    assert callable(predicate)
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"condition not met within {timeout}s: {about}") from None


def _reader_lock_holders(dsn: str, slot: str) -> list[int]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
            "AND ((classid::bigint << 32) | objid::bigint) = hashtextextended(%s, 0)",
            (f"pipeline.reader:{slot}",),
        ).fetchall()
    return [int(r[0]) for r in rows]


async def _partitions(bootstrap: str) -> dict[str, int]:
    """Every topic of the cluster, with its partition count."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return {meta["topic"]: len(meta["partitions"]) for meta in await admin.describe_topics()}
    finally:
        await admin.close()


async def test_a_pooler_dsn_is_refused_leaving_no_lock_and_no_topic(
    fresh_db: str, kafka_bootstrap: str
) -> None:
    """`pipeline reader` pointed at a real PgBouncer (transaction mode, a port that does not
    look like a pooler's) exits 2 with the direct-host hint. It leaves no advisory lock on
    a PgBouncer server connection and creates no topic, so a correctly configured reader
    starts streaming at once. Before, the lock taken over the pooled URL stayed on
    PgBouncer's backend and the next reader waited for it forever, and the topic existed."""
    cfg = _config(fresh_db, kafka_bootstrap)
    parts = urlsplit(fresh_db)
    assert parts.port is not None
    with pgbouncer(upstream_port=parts.port) as bouncer:
        pooled = bouncer.dsn(parts.path.lstrip("/"))
        with psycopg.connect(pooled, autocommit=True) as conn:  # the pooler does work
            assert conn.execute("SELECT 1").fetchone() == (1,)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
        env.update(
            PIPELINE_DATABASE_URL=pooled,
            PIPELINE_KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
            PIPELINE_TEMPORAL_ADDRESS="127.0.0.1:7233",
            PIPELINE_TOPIC=cfg.topic,
            PIPELINE_TOPIC_PARTITIONS=str(cfg.partitions),
            PIPELINE_SLOT_NAME=cfg.slot,
        )
        done = await asyncio.to_thread(
            subprocess.run, [str(PIPELINE), "reader"], env=env, capture_output=True, timeout=120
        )
        err = done.stderr.decode()
        assert done.returncode == 2, err
        assert "direct host" in err.lower() or "DIRECT host" in err, err
        assert "Traceback" not in err, err
        # While PgBouncer still holds its server connections: nothing of ours on them.
        assert _reader_lock_holders(fresh_db, cfg.slot) == []
        assert not {cfg.topic, cfg.dead_letter_topic} & set(await _partitions(kafka_bootstrap))

        reader = Reader(cfg)
        stop = asyncio.Event()
        task = asyncio.create_task(reader.run(stop))
        try:
            await _wait_for(lambda: reader.stats.active, 60, reader.stats)
            assert reader.stats.waiting_for_slot_pid is None
            # The reader created its topic and the dead-letter topic it writes to, with
            # the configured partitions (not a broker's auto-created default).
            topics = await _partitions(kafka_bootstrap)
            assert topics[cfg.topic] == topics[cfg.dead_letter_topic] == cfg.partitions
        finally:
            stop.set()
            await asyncio.wait_for(task, 60)


async def test_the_readers_connections_name_it_in_pg_stat_activity(
    fresh_db: str, kafka_bootstrap: str
) -> None:
    """application_name=pipeline-reader/<instance>: the slot's holder (and the lock's,
    the same walsender) is named, so `pipeline status` shows which replica reads."""
    cfg = _config(fresh_db, kafka_bootstrap, instance_id="replica-7")
    reader = Reader(cfg)
    stop = asyncio.Event()
    task = asyncio.create_task(reader.run(stop))
    try:
        await _wait_for(lambda: reader.stats.active, 60, reader.stats)
        with psycopg.connect(fresh_db) as conn:
            row = conn.execute(
                "SELECT a.application_name, s.active_pid FROM pg_replication_slots s "
                "JOIN pg_stat_activity a ON a.pid = s.active_pid WHERE s.slot_name = %s",
                (cfg.slot,),
            ).fetchone()
        assert row is not None
        assert row[0] == "pipeline-reader/replica-7"
        assert _reader_lock_holders(fresh_db, cfg.slot) == [row[1]]
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_broker_outage_at_session_start_is_retried_not_raised(
    fresh_db: str, kafka_bootstrap: str
) -> None:
    """With no broker at the bootstrap address, the session fails in ensure_topic with a
    KafkaError: Reader.run retries with backoff instead of letting it escape (which took
    `pipeline run` down), and holds no lock or connection between attempts."""
    cfg = _config(fresh_db, f"127.0.0.1:{_dead_port()}", retry_min=0.2, retry_max=1.0)
    reader = Reader(cfg)
    stop = asyncio.Event()
    task = asyncio.create_task(reader.run(stop))
    try:
        await _wait_for(lambda: reader.stats.sessions >= 3 or task.done(), 120, reader.stats)
        assert not task.done(), task.exception()
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
    assert _reader_lock_holders(fresh_db, cfg.slot) == []
