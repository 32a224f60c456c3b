"""Benchmark: PostgreSQL commit -> visible to a read_committed Kafka consumer, at a steady rate.

    .venv/bin/python -m bench.reader_visibility --rate 200 --seconds 20
    PIPELINE_KAFKA_TRANSACTIONS=false .venv/bin/python -m bench.reader_visibility ...

``pipeline reader`` runs as a process on a fresh database; a writer commits single-row
transactions through ``api.emit_domain_event`` at ``--rate`` per second, each carrying
``clock_timestamp()`` taken just before its commit; a consumer with
``isolation_level=read_committed`` (what every consumer of the topic uses) notes when
each record becomes readable. Same machine, same clock. The transactional reader makes a
record readable only once its Kafka transaction commits, so this is the latency an agent
sees; ``PIPELINE_KAFKA_TRANSACTIONS=false`` (idempotent producer only) is the comparison.
Prints p50/p90/p99/max in milliseconds and the reader's CPU seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import threading
import time
import uuid
from datetime import datetime

import orjson
import psycopg
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from bench.harness import (
    RESULTS,
    Names,
    cpu_seconds,
    ensure_services,
    fresh_database,
    pipeline_argv,
    start_process,
    stop_process,
    wait_for_slot_active,
)

EMIT = (
    "SELECT api.emit_domain_event(p_stream_id => %s, p_stream_type => 'organization', "
    "p_event_type => 'latency.probe', "
    "p_event_data => jsonb_build_object('t', extract(epoch from clock_timestamp())))"
)


def _write(dsn: str, rate: float, seconds: float, done: threading.Event) -> int:
    streams = [uuid.uuid4() for _ in range(64)]
    n = 0
    start = time.monotonic()
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() - start < seconds:
            conn.execute(EMIT, (streams[n % len(streams)],))
            n += 1
            pause = start + n / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
    done.set()
    return n


async def _consume(bootstrap: str, topic: str, expected: list[int], lat: list[float]) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(8)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while not expected or len(lat) < expected[0]:
            batch = await consumer.getmany(timeout_ms=100)
            now = time.time()
            for msgs in batch.values():
                for m in msgs:
                    row = orjson.loads(m.value or b"{}")
                    sent = float(row["event_data"]["t"])
                    lat.append((now - sent) * 1000)
    finally:
        await consumer.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    svc = await asyncio.to_thread(ensure_services)
    names = Names.fresh("vis")
    mode = "idempotent" if os.environ.get("PIPELINE_KAFKA_TRANSACTIONS") == "false" else "txn"
    with fresh_database(svc, names) as dsn:
        env = svc.env(names, PIPELINE_INITIAL_SNAPSHOT="false")
        env["PIPELINE_DATABASE_URL"] = dsn
        reader = start_process("reader", pipeline_argv("reader"), env, RESULTS / names.run_id)
        try:
            wait_for_slot_active(dsn, names.slot, [reader])
            await asyncio.sleep(1.0)
            lat: list[float] = []
            expected: list[int] = []
            consumer = asyncio.create_task(_consume(svc.kafka, names.topic, expected, lat))
            done = threading.Event()
            written = await asyncio.to_thread(_write, dsn, args.rate, args.seconds, done)
            expected.append(written)
            await asyncio.wait_for(consumer, 120)
            cpu = cpu_seconds(reader.pid)
        finally:
            stop_process(reader)
        q = statistics.quantiles(lat, n=100)
        print(
            f"{datetime.now():%Y-%m-%d %H:%M} mode={mode} rate={args.rate:g}/s "
            f"events={written} commit->visible ms: p50={q[49]:.1f} p90={q[89]:.1f} "
            f"p99={q[98]:.1f} max={max(lat):.1f}; reader CPU {cpu}s"
        )


if __name__ == "__main__":
    asyncio.run(main())
