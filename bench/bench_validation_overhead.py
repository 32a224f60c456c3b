"""What contract validation adds to the pipeline's per-event cost (issue 8).

    .venv/bin/python -m bench.bench_validation_overhead [--events 20000] [--repeat 3]

The projection agent is where every event is validated: decode, validate, fold into the
projections and write them with the partition checkpoint in one PostgreSQL transaction
per batch. This runs that same handler (``AgentRuntime.project``, batches of 200) over
the contract's own examples on a fresh database, once with validation and once without,
alternating, and reports µs/event and the ratio. Needs the local services (`make up`).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
import uuid

import orjson
import psycopg

from pipeline.agents import effects
from pipeline.agents.runtime import AgentRuntime, Record
from pipeline.contract import default_contract, validate_event
from pipeline.dev.layout import load_layout
from pipeline.migrate import migrate

BATCH = 200


def build_records(count: int) -> list[Record]:
    contract = default_contract()
    examples = [ex.payload for t in sorted(contract.event_types()) for ex in contract.examples(t)]
    records = []
    for i, payload in enumerate(itertools.islice(itertools.cycle(examples), count)):
        row = {**payload, "id": str(uuid.uuid4())}
        headers = (
            ("commit_lsn", f"1/{i + 1:X}".encode()),
            ("idx", b"0"),
            ("xid", str(1000 + i).encode()),
            ("commit_ts", b"2026-11-26T03:00:00+00:00"),
        )
        key = str(row["stream_id"]).encode()
        records.append(Record("bench", 0, i, key, orjson.dumps(row), headers))
    return records


async def run_once(dsn: str, records: list[Record], validate: bool) -> float:
    async def dead_letter(record: Record, headers: list[tuple[str, bytes]]) -> None:
        raise AssertionError(f"unexpected dead letter: {headers}")

    runtime = AgentRuntime(
        worker_id="bench",
        consumer=f"bench-{uuid.uuid4().hex[:6]}",
        enqueue_db=effects.Database(dsn, "e"),
        starter_db=effects.Database(dsn, "s"),
        projection_db=effects.Database(dsn, "p"),
        temporal=effects.WorkflowStartClient("127.0.0.1:1", "default", "unused"),
        dead_letter=dead_letter,
        validate=validate_event if validate else None,
    )
    try:
        start = time.perf_counter()
        for i in range(0, len(records), BATCH):
            await runtime.project(records[i : i + BATCH])
        return time.perf_counter() - start
    finally:
        await runtime.close()


def fresh_database() -> tuple[str, str]:
    layout = load_layout()
    name = f"bench_{uuid.uuid4().hex[:8]}"
    admin = f"postgresql://postgres@{layout.host}:{layout.pg_port}/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = f"postgresql://postgres@{layout.host}:{layout.pg_port}/{name}"
    migrate(dsn)
    return name, dsn


def drop_database(name: str) -> None:
    layout = load_layout()
    admin = f"postgresql://postgres@{layout.host}:{layout.pg_port}/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def main_async(events: int, repeat: int) -> None:
    records = build_records(events)
    timings: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(repeat):
        for validate in (False, True):
            name, dsn = fresh_database()
            try:
                timings[validate].append(await run_once(dsn, records, validate))
            finally:
                drop_database(name)
    without = min(timings[False]) / events * 1e6
    with_validation = min(timings[True]) / events * 1e6
    print(f"events per run: {events}, batches of {BATCH}, best of {repeat}")
    print(f"projection agent without validation: {without:8.1f} µs/event")
    print(f"projection agent with validation:    {with_validation:8.1f} µs/event")
    print(f"validation adds {100 * (with_validation / without - 1):.1f}% to the per-event cost")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main_async(args.events, args.repeat))


if __name__ == "__main__":
    main()
