"""`pipeline run` SIGKILLed at each dangerous moment, and two replicas on one slot and group
(DESIGN.md invariants 2, 3 and 6).

Crash tests: 1,000 organization bootstraps; the process dies by SIGKILL at a deterministic
kill point (``PIPELINE_KILL_AT``) in the middle of the run, without any cleanup, and is
restarted without the kill switch. Afterwards every organization has exactly one of each
event of the chain's head, exactly one Temporal execution, and a queue projection row
that agrees with the events and with Temporal. The kill points:

- ``reader.after_ack_before_flush``: Kafka holds events the slot has not confirmed, so the
  restarted reader sends them again;
- ``agents.after_projection_commit``: a projection batch is committed in PostgreSQL but its
  Kafka offsets are not, so the batch is redelivered;
- ``starter.after_claim``: the claim is in the event store, the workflow is not started;
- ``starter.after_start``: the workflow is started, ``workflow_started`` is not recorded.

Temporal runs the stand-in workflow (the real one is too heavy for 1,000 organizations
on a small machine); the stand-in emits nothing, so each job stays ``processing``.

Replicas: two `pipeline run` processes on one database, slot, topic and consumer group:
one reads the slot, both consume, nothing is duplicated, and when the reader is killed
the other takes the slot over and the chain keeps flowing.
"""

from __future__ import annotations

import signal
import time
T0 = [0.0]
def tick(what: str) -> None:
    print(f"TIMING {time.monotonic() - T0[0]:7.1f}s {what}", flush=True)
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from pipeline import events
from tests.integration.bootstrap_standin import StandInBootstrapWorkflow
from tests.integration.pipeline_process import (
    RunningPipeline,
    eventually,
    free_port,
    pipeline_env,
    scrape_metrics,
    slot_active,
    start_pipeline,
    stop_pipeline,
    wait_exit,
)

ORGS = 1_000
CHAIN_HEAD = (
    events.BOOTSTRAP_INITIATED,
    events.QUEUE_PENDING,
    events.QUEUE_CLAIMED,
    events.BOOTSTRAP_WORKFLOW_STARTED,
)
# Bounds for a hang only; nothing here asserts on speed.
HANG = 300.0

# The n-th time the point is reached, the process kills itself: mid-run for 1,000 orgs.
# The reader confirms a new flush LSN at most once per status interval (1 s); the
# projection folds batches of up to 200 events; the starter claims once per organization.
KILL_POINTS = {
    "reader.after_ack_before_flush": 4,
    "agents.after_projection_commit": 6,
    "starter.after_claim": 300,
    "starter.after_start": 300,
}

# A dead consumer keeps its partitions until its session times out (Faust's default is
# 60 s); the tests kill consumers, so they use a shorter one. Faust reads these itself.
FAST_GROUP_ENV = {"BROKER_SESSION_TIMEOUT": "10", "BROKER_HEARTBEAT_INTERVAL": "1"}

EMIT_INITIATED = (
    "SELECT api.emit_domain_event("
    "  p_stream_id => o, p_stream_type => 'organization', p_event_type => %s,"
    "  p_event_data => jsonb_build_object("
    "    'name', 'Crash Org ' || left(replace(o::text, '-', ''), 8),"
    "    'subdomain', 'crash-' || replace(o::text, '-', ''),"
    "    'admins', jsonb_build_array(jsonb_build_object("
    "      'email', 'admin-' || left(replace(o::text, '-', ''), 8) || '@example.com',"
    "      'role', 'organization_admin'))),"
    '  p_event_metadata => \'{"source": "test"}\'::jsonb) '
    "FROM unnest(%s::uuid[]) AS t(o)"
)


def emit_bootstraps(dsn: str, orgs: Sequence[uuid.UUID], per_transaction: int = 250) -> None:
    """One initiated event per organization, through api.emit_domain_event, in a few
    multi-row transactions."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for start in range(0, len(orgs), per_transaction):
            conn.execute(
                EMIT_INITIATED,
                (events.BOOTSTRAP_INITIATED, list(orgs[start : start + per_transaction])),
            )


def started_count(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(DISTINCT stream_id) FROM domain_events WHERE event_type = %s",
            (events.BOOTSTRAP_WORKFLOW_STARTED,),
        ).fetchone()
    return int(row[0]) if row else 0


def chain_counts(dsn: str) -> dict[uuid.UUID, Counter[str]]:
    """Per organization, how many events of each type the store holds."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT stream_id, event_type, count(*) FROM domain_events GROUP BY 1, 2"
        ).fetchall()
    counts: dict[uuid.UUID, Counter[str]] = {}
    for stream_id, event_type, count in rows:
        counts.setdefault(stream_id, Counter())[str(event_type)] = int(count)
    return counts


def queue_mismatches(dsn: str, orgs: Sequence[uuid.UUID]) -> list[str]:
    """How the queue projection disagrees with the events (empty when it agrees)."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT i.stream_id, i.id, q.job_id, q.status, q.workflow_id, q.run_id, "
            "       s.event_data->>'run_id', s.event_data->>'job_id' "
            "FROM domain_events i "
            "LEFT JOIN workflow_queue_projection q ON q.job_id = i.id "
            "LEFT JOIN domain_events s ON s.stream_id = i.stream_id AND s.event_type = %s "
            "WHERE i.event_type = %s",
            (events.BOOTSTRAP_WORKFLOW_STARTED, events.BOOTSTRAP_INITIATED),
        ).fetchall()
        jobs = conn.execute("SELECT count(*) FROM workflow_queue_projection").fetchone()
    problems = []
    if len(rows) != len(orgs) or {r[0] for r in rows} != set(orgs):
        problems.append(f"{len(rows)} initiated events for {len(orgs)} organizations")
    if jobs is None or jobs[0] != len(orgs):
        problems.append(f"{jobs} queue rows for {len(orgs)} organizations")
    for org, job_id, row_job, status, workflow_id, run_id, started_run, started_job in rows:
        expected = (job_id, "processing", events.workflow_id_for(str(org)), started_run)
        if (row_job, status, workflow_id, run_id) != expected or started_job != str(job_id):
            problems.append(f"org {org}: row {(row_job, status, workflow_id, run_id)}")
    return problems[:10]


async def consumed_everything(running: RunningPipeline) -> bool:
    """Whether the consumer group has committed every record of the source topic."""
    settings = running.settings
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    await consumer.start()
    try:
        parts = [TopicPartition(settings.topic, p) for p in range(settings.topic_partitions)]
        ends = await consumer.end_offsets(parts)
        committed = await admin.list_consumer_group_offsets(settings.consumer_group)
    finally:
        await consumer.stop()
        await admin.close()
    return all(tp in committed and committed[tp].offset == ends[tp] for tp in parts)


async def executions(client: Client, task_queue: str) -> list[tuple[str, str]]:
    """(workflow id, run id) of every execution on the task queue."""
    return [(w.id, w.run_id) async for w in client.list_workflows(f"TaskQueue = '{task_queue}'")]


async def execution_count(client: Client, task_queue: str) -> int:
    return (await client.count_workflows(f"TaskQueue = '{task_queue}'")).count


async def assert_exactly_once(
    dsn: str, client: Client, running: RunningPipeline, orgs: Sequence[uuid.UUID]
) -> None:
    """Wait until the run settled, then: one of each chain event and one execution per
    organization, and a queue projection that agrees with both."""
    await eventually(
        lambda: started_count(dsn) == len(orgs), "every workflow_started", running, HANG
    )
    tick("all started")
    await eventually(lambda: consumed_everything(running), "every record committed", running, HANG)
    tick("consumed")
    await eventually(lambda: not queue_mismatches(dsn, orgs), "the queue projection", running, HANG)
    tick("projection")
    queue = running.settings.temporal_task_queue

    async def visible() -> bool:  # Temporal's visibility store is eventually consistent
        return await execution_count(client, queue) >= len(orgs)

    await eventually(visible, "every execution visible in Temporal", running, HANG)
    tick("temporal")

    counts = chain_counts(dsn)
    assert set(counts) == set(orgs)
    wrong = {org: dict(c) for org, c in counts.items() if c != Counter(CHAIN_HEAD)}
    assert not wrong, (
        f"{len(wrong)} organizations with a wrong chain, e.g. {list(wrong.items())[:3]}"
    )

    runs = await executions(client, queue)
    per_id = Counter(workflow_id for workflow_id, _ in runs)
    assert len(runs) == len(orgs), f"{len(runs)} executions for {len(orgs)} organizations"
    assert set(per_id) == {events.workflow_id_for(str(org)) for org in orgs}
    assert max(per_id.values()) == 1
    with psycopg.connect(dsn) as conn:
        recorded: dict[str, str] = dict(
            conn.execute("SELECT workflow_id, run_id FROM workflow_queue_projection").fetchall()
        )
    assert recorded == dict(runs)
    assert queue_mismatches(dsn, orgs) == []


@asynccontextmanager
async def standin_worker(client: Client, env: dict[str, str]) -> AsyncIterator[None]:
    """A worker for the pipeline's task queue that runs the stand-in workflow."""
    async with Worker(
        client,
        task_queue=env["PIPELINE_TEMPORAL_TASK_QUEUE"],
        workflows=[StandInBootstrapWorkflow],
        # The sandbox re-imports the workflow's module for every run: costly for 1,000
        # runs on a small machine, and the stand-in needs no protection from itself.
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        yield


@pytest.mark.parametrize("point", sorted(KILL_POINTS))
async def test_sigkill_at_a_kill_point_then_restart_is_exactly_once(
    fresh_db: str, kafka_bootstrap: str, temporal_client: Client, tmp_path: Path, point: str
) -> None:
    env = {
        **pipeline_env(
            fresh_db, kafka_bootstrap, temporal_client.service_client.config.target_host, tmp_path
        ),
        **FAST_GROUP_ENV,
    }
    orgs = [uuid.uuid4() for _ in range(ORGS)]
    T0[0] = time.monotonic()
    async with standin_worker(temporal_client, env):
        doomed = start_pipeline(
            {**env, "PIPELINE_KILL_AT": f"{point}:{KILL_POINTS[point]}"}, tmp_path, "doomed"
        )
        try:
            await eventually(
                lambda: slot_active(fresh_db, doomed.settings.slot_name), "the reader", doomed
            )
            tick("slot active")
            emit_bootstraps(fresh_db, orgs)
            tick("emitted")
            code = await wait_exit(doomed, f"the kill point {point}", HANG)
        finally:
            stop_pipeline(doomed, signal.SIGKILL)
        assert code == -signal.SIGKILL, f"exit {code}, not the kill point:\n{doomed.log_tail()}"
        started_before = started_count(fresh_db)
        print(f"killed at {point}: {started_before} of {ORGS} workflows recorded as started")
        assert started_before < ORGS, f"the kill at {point} came after the run had finished"

        tick("killed")
        restarted = start_pipeline(env, tmp_path, "restarted")
        try:
            await assert_exactly_once(fresh_db, temporal_client, restarted, orgs)
            tick("asserted")
        finally:
            stop_pipeline(restarted)
