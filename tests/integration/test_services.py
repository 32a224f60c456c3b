"""Each local service is real: logical decoding, Kafka's idempotent producer and consumer
groups, and a Temporal workflow with an activity. Plus `dev up` / `dev down` semantics."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from temporalio.client import Client
from temporalio.worker import Worker

from pipeline.dev import services
from pipeline.dev.layout import DevLayout, load_layout
from pipeline.dev.process import pid_alive, port_open
from tests.integration.ports import free_port
from tests.integration.probe_workflow import ShoutWorkflow, shout

pytestmark = pytest.mark.integration


def test_pgoutput_start_replication_returns_an_inserted_row(fresh_db: str) -> None:
    slot = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        level = conn.execute("SHOW wal_level").fetchone()
        assert level == ("logical",)
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
        row = conn.execute(
            "SELECT api.emit_domain_event(p_stream_id => gen_random_uuid(), "
            "p_stream_type => 'organization', p_event_type => 'service.checked', "
            "p_event_data => '{\"probe\": true}'::jsonb)"
        ).fetchone()
        assert row is not None
        event_id = str(row[0]).encode()
    repl = psycopg.connect(fresh_db, autocommit=True, replication="database")
    try:
        pgconn = repl.pgconn
        pgconn.send_query(
            f"START_REPLICATION SLOT {slot} LOGICAL 0/0 "
            "(proto_version '1', publication_names 'pipeline_domain_events')".encode()
        )
        result = pgconn.get_result()
        assert result is not None
        assert result.status == psycopg.pq.ExecStatus.COPY_BOTH
        kinds = []
        for _ in range(50):
            _, data = pgconn.get_copy_data(0)
            frame = bytes(data)
            if frame[:1] == b"w":
                kinds.append(frame[25:26])  # pgoutput message tag after the XLogData header
                if event_id in frame:
                    break
        assert kinds[:3] == [b"B", b"R", b"I"]
        assert event_id in frame
    finally:
        repl.close()


async def test_idempotent_producer_and_consumer_group_round_trip(kafka_bootstrap: str) -> None:
    topic = f"t-{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, enable_idempotence=True, acks="all"
    )
    await producer.start()
    try:
        sent = [f"event-{i}".encode() for i in range(30)]
        for i, value in enumerate(sent):
            await producer.send_and_wait(topic, value, key=str(i % 5).encode())
    finally:
        await producer.stop()
    group = f"g-{uuid.uuid4().hex[:8]}"
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        received: list[bytes] = []
        async with asyncio.timeout(60):
            while len(received) < len(sent):
                batch = await consumer.getmany(timeout_ms=1000)
                for records in batch.values():
                    received.extend(r.value for r in records if r.value is not None)
        await consumer.commit()
        assert sorted(received) == sorted(sent)
        committed = {tp: await consumer.committed(tp) for tp in consumer.assignment()}
        assert sum(o or 0 for o in committed.values()) == len(sent)
    finally:
        await consumer.stop()


async def test_temporal_workflow_with_an_activity_completes(temporal_client: Client) -> None:
    queue = f"q-{uuid.uuid4()}"
    async with Worker(
        temporal_client, task_queue=queue, workflows=[ShoutWorkflow], activities=[shout]
    ):
        result = await temporal_client.execute_workflow(
            ShoutWorkflow.run, "real", id=f"wf-{uuid.uuid4()}", task_queue=queue
        )
    assert result == "REAL"


def test_dev_up_is_idempotent_and_down_stops_exactly_what_it_started(
    dev_layout: DevLayout, tmp_path: Path
) -> None:
    # A second, private set of services on other ports, so the shared ones stay up.
    env = {
        "PIPELINE_DEV_DIR": str(tmp_path / "dev"),
        "PIPELINE_CACHE_DIR": str(dev_layout.cache_dir),
        "PIPELINE_DEV_PG_PORT": str(free_port()),
        "PIPELINE_DEV_KAFKA_PORT": str(free_port()),
        "PIPELINE_DEV_KAFKA_CONTROLLER_PORT": str(free_port()),
        # Temporal's HTTP and metrics ports are its gRPC port + 10 and + 11.
        "PIPELINE_DEV_TEMPORAL_PORT": str(free_port(10, 11)),
        "PIPELINE_DEV_TEMPORAL_UI_PORT": str(free_port()),
    }
    layout = load_layout(env)
    try:
        assert sorted(services.up(layout)) == ["kafka", "postgres", "temporal"]
        pids = {s.name: s.pid for s in services.status(layout)}
        assert all(s.healthy for s in services.status(layout))
        assert services.up(layout) == []  # second `up`: nothing started
        assert {s.name: s.pid for s in services.status(layout)} == pids
    finally:
        stopped = services.down(layout)
    assert sorted(stopped) == ["kafka", "postgres", "temporal"]
    for pid in pids.values():
        assert pid is not None and not pid_alive(pid)
    for port in (layout.pg_port, layout.kafka_port, layout.temporal_port):
        assert not port_open(layout.host, port)
    assert services.down(layout) == []
    # The shared services were not touched.
    assert all(s.healthy for s in services.status(dev_layout))
