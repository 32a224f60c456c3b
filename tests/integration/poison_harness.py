"""The harness of the poison tests (test_poison.py): odd events committed with plain SQL,
every record of a topic read with a plain consumer and compared with its row, the slot's
position, the bootstraps completed and the dead letters stored."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from pathlib import Path

import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord
from psycopg.types.json import Jsonb

from pipeline import events
from replication.lsn import LSN
from tests.exact_json import DEEP, exact, same
from tests.integration.pipeline_process import (
    RunningPipeline,
    pipeline_cli,
)

MB = 1024 * 1024
FIFTY = "12345678901234567890123456789012345678901234567890"
UNICODE = '{"rtl": "مرحبا שלום", "emoji": "👩‍👩‍👧‍👦🚀", "astral": "𝕏𐍈𠜎"}'
UNKNOWN_TYPE = "test.unknown.type"
RSS_LIMIT_KB = 1536 * 1024  # 1.5 GB

EMIT_SQL = (
    "SELECT api.emit_domain_event(p_stream_id => %s, p_stream_type => 'organization', "
    "p_event_type => %s, p_event_data => %s, p_event_metadata => {meta})"
)


def org_data(org: uuid.UUID) -> Jsonb:
    return Jsonb({"name": f"Org {org.hex[:6]}", "subdomain": f"p-{org.hex[:10]}"})


def emit_bootstrap(conn: psycopg.Connection[tuple[object, ...]], org: uuid.UUID) -> None:
    data = Jsonb(
        {
            "name": f"Org {org.hex[:6]}",
            "subdomain": f"b-{org.hex[:10]}",
            "admins": [{"email": f"a-{org.hex[:6]}@example.test", "role": "organization_admin"}],
        }
    )
    conn.execute(
        EMIT_SQL.format(meta="%s"), (org, events.BOOTSTRAP_INITIATED, data, Jsonb({"source": "t"}))
    )


def emit_odd_events(
    conn: psycopg.Connection[tuple[object, ...]], bootstraps: list[uuid.UUID]
) -> dict[str, uuid.UUID]:
    """The hostile events, with bootstraps between them; their stream ids by name."""
    blob = "jsonb_build_object('source', 'test', 'blob', repeat('x', %s))"
    literal = "jsonb_build_object('source', 'test', 'odd', %s::jsonb)"
    odd: list[tuple[str, str, str, object]] = [
        ("2mb", events.ORGANIZATION_CREATED, blob, 2 * MB),
        ("20mb", events.ORGANIZATION_CREATED, blob, 20 * MB),
        ("200mb", events.ORGANIZATION_CREATED, blob, 200 * MB),
        ("deep", events.ORGANIZATION_CREATED, literal, DEEP),
        ("1e309", events.ORGANIZATION_CREATED, literal, "1e309"),
        ("fifty", events.ORGANIZATION_CREATED, literal, FIFTY + "." + FIFTY),
        ("unicode", events.ORGANIZATION_CREATED, literal, UNICODE),
        ("unknown", UNKNOWN_TYPE, blob, 2 * MB),
    ]
    streams: dict[str, uuid.UUID] = {}
    per_gap = len(bootstraps) // (len(odd) + 1)
    pending = list(bootstraps)
    for name, event_type, meta, arg in odd:
        for _ in range(per_gap):
            emit_bootstrap(conn, pending.pop())
        org = streams[name] = uuid.uuid4()
        conn.execute(EMIT_SQL.format(meta=meta), (org, event_type, org_data(org), arg))
    for org in pending:
        emit_bootstrap(conn, org)
    return streams


async def cli(
    args: list[str], env: dict[str, str], *, check: bool = True
) -> subprocess.CompletedProcess[str]:
    done = await asyncio.to_thread(
        subprocess.run,
        [pipeline_cli(), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


async def read_all(bootstrap: str, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of the topic, from the beginning to its current end."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed",  # what every consumer of the topic must read
        max_partition_fetch_bytes=32 * MB,
        fetch_max_bytes=64 * MB,
    )
    await consumer.start()
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            (described,) = await admin.describe_topics([topic])
        finally:
            await admin.close()
        parts = [TopicPartition(topic, int(p["partition"])) for p in described["partitions"]]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        out: list[ConsumerRecord[bytes, bytes]] = []
        remaining = {tp for tp in parts if ends[tp] > 0}
        async with asyncio.timeout(120):
            while remaining:
                fetched = await consumer.getmany(*remaining, timeout_ms=500)
                for tp, msgs in fetched.items():
                    out.extend(m for m in msgs if m.offset < ends[tp])
                # By position, not by the last record's offset: the reader writes in Kafka
                # transactions, and a partition's last offset may be a commit marker.
                for tp in list(remaining):
                    if await consumer.position(tp) >= ends[tp]:
                        remaining.discard(tp)
        return out
    finally:
        await consumer.stop()


def table_rows(dsn: str) -> dict[str, dict[str, object]]:
    """The table as PostgreSQL prints it; payloads above 1 MB only by length."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT id::text, stream_id::text, stream_type, stream_version, event_type, "
            "CASE WHEN octet_length(event_data::text) > 1048576 THEN NULL ELSE event_data::text END, "
            "CASE WHEN octet_length(event_metadata::text) > 1048576 THEN NULL "
            "ELSE event_metadata::text END, idempotency_key, created_at, "
            "octet_length(event_data::text) + octet_length(event_metadata::text) "
            "FROM domain_events"
        ).fetchall()
    return {
        str(r[0]): {
            "id": r[0],
            "stream_id": r[1],
            "stream_type": r[2],
            "stream_version": r[3],
            "event_type": r[4],
            "event_data": r[5],
            "event_metadata": r[6],
            "idempotency_key": r[7],
            "created_at": r[8],
            "payload_bytes": r[9],
        }
        for r in rows
    }


def check_record(record: ConsumerRecord[bytes, bytes], row: dict[str, object]) -> bool:
    """Whether the record is the row; returns whether it is a claim check."""
    from datetime import datetime

    headers = dict(record.headers)
    claim = headers.get("claim_check") == b"1"
    value = exact(record.value or b"")
    assert isinstance(value, dict)
    assert record.key == str(row["stream_id"]).encode()
    for name in ("id", "stream_id", "stream_type", "stream_version", "event_type"):
        assert value[name] == row[name], (name, value[name], row[name])
    assert value["idempotency_key"] == row["idempotency_key"]
    assert datetime.fromisoformat(str(value["created_at"])) == row["created_at"]
    if claim:
        # The reference carries no payload: consumers read it from the store, by id.
        assert "event_data" not in value and "event_metadata" not in value
        assert int(str(row["payload_bytes"])) > 15 * MB
        return True
    if row["event_metadata"] is None:  # large, not fetched twice: compare by size
        raw = record.value or b""
        assert len(raw) > int(str(row["payload_bytes"]))
        return False
    assert same(value["event_data"], exact(str(row["event_data"])))
    assert same(value["event_metadata"], exact(str(row["event_metadata"])))
    return False


def lsn_now(dsn: str) -> LSN:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    assert row is not None
    return LSN.parse(str(row[0]))


def confirmed_flush(dsn: str, slot: str) -> LSN:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
            (slot,),
        ).fetchone()
    return LSN.parse(str(row[0])) if row and row[0] else LSN.ZERO


def completed(dsn: str, orgs: list[uuid.UUID]) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(DISTINCT stream_id) FROM domain_events "
            "WHERE stream_id = ANY(%s) AND event_type = %s",
            (orgs, events.QUEUE_COMPLETED),
        ).fetchone()
    return int(row[0]) if row else 0


def dead_letter_rows(dsn: str) -> list[tuple[str, str, bool]]:
    with psycopg.connect(dsn) as conn:
        return [
            (str(r[0]), str(r[1]), bool(r[2]))
            for r in conn.execute(
                "SELECT dead_letter_key, source, published FROM pipeline_dead_letters"
            ).fetchall()
        ]


async def check_topics(
    running: RunningPipeline, streams: dict[str, uuid.UUID], kafka_bootstrap: str
) -> None:
    dsn, settings = running.settings.database_url.get_secret_value(), running.settings
    rows = table_rows(dsn)
    records = await read_all(kafka_bootstrap, settings.topic)
    by_id: dict[str, ConsumerRecord[bytes, bytes]] = {}
    for record in records:
        head = (record.value or b"")[:60]
        event_id = head.split(b'"id":"', 1)[1][:36].decode()
        assert event_id not in by_id, f"event {event_id} twice in the topic"
        by_id[event_id] = record
    assert set(by_id) == set(rows), "the topic holds every row of the table, and only those"
    claim_checked = {
        str(rows[event_id]["stream_id"])
        for event_id, record in by_id.items()
        if check_record(record, rows[event_id])
    }
    assert claim_checked == {str(streams["20mb"]), str(streams["200mb"])}

    dead = await read_all(kafka_bootstrap, settings.dead_letter_topic)
    assert len(dead) == 1, [dict(r.headers).get("reason") for r in dead]
    headers = dict(dead[0].headers)
    assert headers["reason_kind"] == b"contract"
    assert dead[0].key == str(streams["unknown"]).encode()
    assert dead_letter_rows(dsn) == [
        (headers["dead_letter_key"].decode(), "projection", True),
    ]
    # The odd but valid events went through the projection fold.
    with psycopg.connect(dsn) as conn:
        folded = conn.execute(
            "SELECT count(*) FROM organizations_projection WHERE id = ANY(%s)",
            ([streams[name] for name in streams if name != "unknown"],),
        ).fetchone()
    assert folded is not None and folded[0] == len(streams) - 1
