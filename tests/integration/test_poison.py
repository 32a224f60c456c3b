"""Issue 13: no record can stop the pipeline (DESIGN.md invariant 7).

One `pipeline run` (reader + agents, as a process) with the real bootstrap worker gets,
through plain SQL ``api.emit_domain_event``: events of 2 MB, 20 MB and 200 MB, jsonb
nested 1,100 levels, ``1e309``, a 50-digit decimal, RTL/emoji/astral text, an unknown
event type of 2 MB, and 50 valid bootstraps interleaved. Checked from the outside with
a plain aiokafka consumer: every bootstrap completes, every row is in the topic exactly
as in the table (claim checks resolved through the store), the only dead letter is the
agents' reject of the unknown type, once, the slot passes the last commit; then
``pipeline replay --from-lsn`` over the same data adds no dead letter. The peak RSS of
`pipeline run` is read from /proc (VmHWM) and printed. The harness: poison_harness.py.
"""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb
from temporalio.client import Client

from pipeline import events
from tests.exact_json import DEEP, exact, same
from tests.integration.pipeline_process import (
    eventually,
    pipeline_and_worker,
    slot_active,
)
from tests.integration.poison_harness import (
    EMIT_SQL,
    MB,
    RSS_LIMIT_KB,
    UNKNOWN_TYPE,
    check_topics,
    cli,
    completed,
    confirmed_flush,
    dead_letter_rows,
    emit_odd_events,
    lsn_now,
    org_data,
    peak_rss_kb,
    read_all,
)

pytestmark = pytest.mark.integration


async def test_no_record_stops_the_pipeline(
    fresh_db: str, kafka_bootstrap: str, temporal_client: Client, tmp_path: Path
) -> None:
    dsn = fresh_db
    bootstraps = [uuid.uuid4() for _ in range(50)]
    async with pipeline_and_worker(dsn, kafka_bootstrap, temporal_client, tmp_path) as running:
        settings = running.settings
        await eventually(lambda: slot_active(dsn, settings.slot_name), "the reader", running)
        with psycopg.connect(dsn, autocommit=True) as conn:
            streams = await asyncio.to_thread(emit_odd_events, conn, bootstraps)
        last_commit = lsn_now(dsn)

        await eventually(
            lambda: completed(dsn, bootstraps) == len(bootstraps),
            "all 50 bootstraps completed",
            running,
            timeout=600,
        )
        await eventually(
            lambda: confirmed_flush(dsn, settings.slot_name) >= last_commit,
            f"the slot's confirmed flush LSN past the last commit {last_commit}",
            running,
            timeout=300,
        )
        await eventually(
            lambda: len(dead_letter_rows(dsn)) >= 1, "the unknown type's dead letter", running
        )
        rss_kb = peak_rss_kb(running.proc.pid)
        print(f"peak RSS (VmHWM) of `pipeline run`: {rss_kb / 1024:.0f} MiB")
        await check_topics(running, streams, kafka_bootstrap)
        status = await cli(["status", "--json"], running.env)
        assert json.loads(status.stdout)["dead_letters"] == {
            "open": 1,
            "not_sent": 0,
            "redriven": 0,
        }
        listed = await cli(["dead-letters", "list"], running.env)
        assert "1 dead letter(s)" in listed.stdout and "contract" in listed.stdout
        key = listed.stdout.split()[0]
        shown = await cli(["dead-letters", "show", key], running.env)
        assert UNKNOWN_TYPE in shown.stdout
        assert rss_kb < RSS_LIMIT_KB, f"peak RSS {rss_kb} kB >= 1.5 GB"

    # SIGTERM (stop_pipeline) stopped it within its grace period, without a SIGKILL.
    assert running.proc.returncode is not None
    assert running.proc.returncode != -signal.SIGKILL, running.log_tail()

    # The same data again, through `pipeline replay`: no dead letter is added.
    dlq_before = await read_all(kafka_bootstrap, settings.dead_letter_topic)
    await cli(["replay", "--from-lsn", "0/0"], running.env)
    # A redrive of a record still rejected for the same reason adds nothing either.
    again = await cli(["dead-letters", "redrive", "--all"], running.env, check=False)
    assert again.returncode == 1 and "still rejected" in again.stdout, again.stdout + again.stderr
    dlq_after = await read_all(kafka_bootstrap, settings.dead_letter_topic)
    assert len(dlq_after) == len(dlq_before) == 1
    assert len(dead_letter_rows(dsn)) == 1


async def test_a_dead_letter_is_sent_once_and_a_failed_send_is_bounded(
    fresh_db: str, kafka_bootstrap: str
) -> None:
    """The agents' dead-letter path against real PostgreSQL and Kafka: a second rejection
    of the same (position, reason) sends nothing; a send Kafka refuses for good ends
    after its attempts, is kept unpublished and reported by readiness."""
    from aiokafka import AIOKafkaProducer

    from pipeline import health
    from pipeline.agents import dlq
    from pipeline.agents.dlq import DeadLetterer
    from pipeline.agents.effects import Database
    from pipeline.agents.errors import RecordRejected
    from pipeline.agents.runtime import Record

    topic = f"dlq-{uuid.uuid4().hex[:8]}"
    ok = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    tiny = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, max_request_size=1000)
    await ok.start()
    await tiny.start()

    def sender(producer: AIOKafkaProducer):  # type: ignore[no-untyped-def]
        async def send(record: Record, headers: list[tuple[str, bytes]]) -> None:
            await producer.send_and_wait(topic, record.value, key=record.key, headers=headers)

        return send

    headers = (("commit_lsn", b"0/16B3748"), ("idx", b"2"), ("xid", b"9"), ("commit_ts", b"x"))
    record = Record("events", 1, 7, b"k", b"x" * 5000, headers)
    replayed = Record("events", 1, 70, b"k", b"x" * 5000, headers)  # same position, later
    rejection = RecordRejected("contract", "unknown event type")
    good = DeadLetterer(Database(fresh_db, "t"), sender(ok))
    refused = DeadLetterer(Database(fresh_db, "t2"), sender(tiny), attempts=2, timeout=5)
    try:
        assert await good.reject(record, rejection)
        assert not await good.reject(replayed, rejection)  # once per (position, reason)
        assert await good.reject(record, RecordRejected("projection", "x"))  # another reason
        other = Record(
            "events",
            1,
            8,
            b"k",
            b"y" * 5000,
            (("commit_lsn", b"0/16B3748"), ("idx", b"3"), ("xid", b"9"), ("commit_ts", b"x")),
        )
        started = asyncio.get_running_loop().time()
        assert await refused.reject(other, rejection)  # returns: bounded, nothing blocks
        assert asyncio.get_running_loop().time() - started < 30
        assert any("could not be sent" in reason for reason in health.not_ready_reasons())
        dlq._unpublished.clear()  # this process's readiness, for the tests after this one
    finally:
        await good.close()
        await refused.close()
        await ok.stop()
        await tiny.stop()
    rows = sorted(dead_letter_rows(fresh_db))
    assert rows == [
        ("0/16B3748/2/contract", "projection", True),
        ("0/16B3748/2/projection", "projection", True),
        ("0/16B3748/3/contract", "projection", False),
    ]
    assert len(await read_all(kafka_bootstrap, topic)) == 2


async def test_the_initial_snapshot_sends_claim_checks_and_faithful_values(
    fresh_db: str, kafka_bootstrap: str
) -> None:
    """Rows already in the table when the slot is created go the same way as streamed
    ones: a 20 MB row as a claim check, deep and huge-number jsonb verbatim."""
    from replication.reader import Reader, ReaderConfig

    big, odd = uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute(
            EMIT_SQL.format(meta="jsonb_build_object('source', 'test', 'blob', repeat('x', %s))"),
            (big, events.ORGANIZATION_CREATED, org_data(big), 20 * MB),
        )
        conn.execute(
            EMIT_SQL.format(meta="%s::jsonb"),
            (odd, "test.odd", Jsonb({}), '{"deep": ' + DEEP + ', "n": 1e309}'),
        )
    suffix = uuid.uuid4().hex[:10]
    cfg = ReaderConfig(
        dsn=fresh_db,
        kafka_bootstrap=kafka_bootstrap,
        topic=f"events-{suffix}",
        partitions=2,
        slot=f"slot_{suffix}",
        status_interval=0.2,
    )
    reader = Reader(cfg)
    stop = asyncio.Event()
    task = asyncio.create_task(reader.run(stop))
    try:
        async with asyncio.timeout(120):
            while reader.stats.snapshot_rows < 2:
                await asyncio.sleep(0.2)
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
    records = {r.key: r for r in await read_all(kafka_bootstrap, cfg.topic)}
    assert dict(records[str(big).encode()].headers)["claim_check"] == b"1"
    reference = exact(records[str(big).encode()].value or b"")
    assert isinstance(reference, dict) and "event_metadata" not in reference
    value = exact(records[str(odd).encode()].value or b"")
    assert isinstance(value, dict)
    with psycopg.connect(fresh_db) as conn:
        row = conn.execute(
            "SELECT event_metadata::text FROM domain_events WHERE stream_id = %s", (odd,)
        ).fetchone()
    assert row is not None
    assert same(value["event_metadata"], exact(str(row[0])))
    assert value["event_metadata"]["n"] == Decimal("1e309")
