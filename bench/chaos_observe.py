"""Reading the outcome of a chaos run from outside the pipeline.

Plain SQL over ``domain_events`` and the projections, Temporal's own visibility API for
the executions of the run's task queue, and a plain aiokafka consumer over the whole
topic. Nothing here uses the pipeline's own code paths.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta

import orjson
import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from temporalio.client import Client, WorkflowExecutionStatus

from bench.chaos_checks import QueueRow
from pipeline import events as ev

VISIBILITY_RPC_TIMEOUT = timedelta(seconds=120)


@dataclass(frozen=True, slots=True)
class StoreView:
    """The event store and the queue projection as SQL sees them."""

    chains: dict[str, list[tuple[str, float]]]  # org -> [(event_type, created_at epoch)]
    run_ids: dict[str, str | None]  # org -> workflow_started's run_id
    queue: dict[str, QueueRow]  # org -> its queue row
    stuck_jobs: int  # queue rows still pending or processing
    rows: int  # events in domain_events


def read_store(dsn: str) -> StoreView:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT stream_id::text, event_type, extract(epoch FROM created_at)::float8, "
            "event_data->>'run_id' FROM domain_events ORDER BY stream_id, stream_version"
        ).fetchall()
        queue = conn.execute(
            "SELECT stream_id::text, status, workflow_id, run_id, started_at IS NOT NULL "
            "FROM workflow_queue_projection"
        ).fetchall()
        stuck = conn.execute(
            "SELECT count(*) FROM workflow_queue_projection "
            "WHERE status IN ('pending', 'processing')"
        ).fetchone()
    chains: dict[str, list[tuple[str, float]]] = defaultdict(list)
    run_ids: dict[str, str | None] = {}
    for org, event_type, at, run_id in rows:
        chains[org].append((str(event_type), float(at)))
        if event_type == ev.BOOTSTRAP_WORKFLOW_STARTED:
            run_ids[org] = run_id
    return StoreView(
        chains=dict(chains),
        run_ids=run_ids,
        queue={
            str(org): QueueRow(str(status), workflow_id, run_id, bool(started))
            for org, status, workflow_id, run_id, started in queue
        },
        stuck_jobs=int(stuck[0]) if stuck else 0,
        rows=len(rows),
    )


def settled(dsn: str) -> tuple[int, int, int]:
    """(bootstraps with a queue outcome, queue rows pending or processing, events)."""
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT (SELECT count(DISTINCT stream_id) FROM domain_events "
            "        WHERE event_type IN (%s, %s)), "
            "       (SELECT count(*) FROM workflow_queue_projection "
            "        WHERE status IN ('pending', 'processing')), "
            "       (SELECT count(*) FROM domain_events)",
            (ev.QUEUE_COMPLETED, ev.QUEUE_FAILED),
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


@dataclass(frozen=True, slots=True)
class TemporalView:
    runs: dict[str, list[tuple[str, str]]]  # workflow id -> [(run id, status name)]
    counted: int  # count_workflows over the task queue


async def read_temporal(address: str, task_queue: str, expected: int, wait: float) -> TemporalView:
    """Every execution on the run's task queue, once visibility shows ``expected`` closed
    ones (or ``wait`` seconds passed: visibility is eventually consistent)."""
    client = await Client.connect(address, namespace="default")
    query = f"TaskQueue = '{task_queue}'"
    closed_query = f"{query} AND ExecutionStatus != 'Running'"
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        closed = await client.count_workflows(closed_query, rpc_timeout=VISIBILITY_RPC_TIMEOUT)
        if closed.count >= expected:
            break
        await asyncio.sleep(2)
    seen: dict[str, dict[str, str]] = defaultdict(dict)
    listing = client.list_workflows(query, page_size=1000, rpc_timeout=VISIBILITY_RPC_TIMEOUT)
    # A listing is paged and an execution closing between two pages can be listed twice:
    # an execution is its (workflow id, run id).
    async for wf in listing:
        status = wf.status.name if wf.status is not None else "UNKNOWN"
        seen[wf.id][wf.run_id] = status
    counted = await client.count_workflows(query, rpc_timeout=VISIBILITY_RPC_TIMEOUT)
    return TemporalView(
        runs={wid: sorted(by_run.items()) for wid, by_run in seen.items()},
        counted=counted.count,
    )


COMPLETED = WorkflowExecutionStatus.COMPLETED.name


@dataclass(frozen=True, slots=True)
class TopicView:
    records: int
    positions: list[tuple[str, str]]  # (commit_lsn, idx) header of each record
    event_ids: list[str]  # the row's id in each record's value


async def read_topic(bootstrap: str, topic: str, partitions: int) -> TopicView:
    """Every committed record of the topic, from the first offset to the end."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed",
        max_partition_fetch_bytes=32 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    positions: list[tuple[str, str]] = []
    event_ids: list[str] = []
    try:
        parts = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        pending = {tp for tp in parts if ends[tp] > 0}
        async with asyncio.timeout(600):
            while pending:
                batch = await consumer.getmany(*pending, timeout_ms=1000)
                for messages in batch.values():
                    for m in messages:
                        headers = {k: bytes(v) for k, v in m.headers}
                        positions.append(
                            (
                                headers.get("commit_lsn", b"?").decode(),
                                headers.get("idx", b"?").decode(),
                            )
                        )
                        event_ids.append(_event_id(m.value))
                for tp in list(pending):
                    if await consumer.position(tp) >= ends[tp]:
                        pending.discard(tp)
    finally:
        await consumer.stop()
    return TopicView(len(positions), positions, event_ids)


def _event_id(value: bytes | None) -> str:
    try:
        row = orjson.loads(value or b"{}")
    except orjson.JSONDecodeError:
        return "?"
    return str(row.get("id", "?")) if isinstance(row, dict) else "?"
