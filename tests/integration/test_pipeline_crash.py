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
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
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

pytestmark = pytest.mark.integration

ORGS = 1_000
CHAIN_HEAD = (
    events.BOOTSTRAP_INITIATED,
    events.QUEUE_PENDING,
    events.QUEUE_CLAIMED,
    events.BOOTSTRAP_WORKFLOW_STARTED,
)
# Bounds for a hang only; nothing here asserts on speed. The dev server's visibility
# store (SQLite, shared with every other test) can take longer than the SDK's default
# RPC timeout to list 1,000 executions.
HANG = 300.0
VISIBILITY_RPC_TIMEOUT = timedelta(seconds=120)

# The n-th time the point is reached, the process kills itself: mid-run for 1,000 orgs.
# The reader confirms a new flush LSN at most once per status interval (1 s), so its
# count is seconds into the run: 15 came after the whole run once the pipeline got
# faster (the test's own check below caught it); 5 is a few seconds into the chain's
# events, with one or two confirmations of start-up WAL before them. The projection
# folds whatever queued in one transaction (pipeline.consumer.lane: hundreds of events
# per commit once the chain is busy, so 40 commits came after the whole run); 3 is the
# third fold of the run. The starter claims once per organization.
KILL_POINTS = {
    "reader.after_ack_before_flush": 5,
    "agents.after_projection_commit": 3,
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
    """Whether the consumer group has committed every record of the source topic.

    The reader writes in Kafka transactions: each commit leaves a marker that takes an
    offset, and a consumer commits the offset after the last record it processed, so
    "everything" means no readable record at or after the committed offset."""
    settings = running.settings
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, isolation_level="read_committed"
    )
    await admin.start()
    await consumer.start()
    try:
        parts = [TopicPartition(settings.topic, p) for p in range(settings.topic_partitions)]
        ends = await consumer.end_offsets(parts)
        committed = await admin.list_consumer_group_offsets(settings.consumer_group)
        consumer.assign(parts)
        for tp in parts:
            # A partition the group never committed must hold no readable record at all.
            start = committed[tp].offset if tp in committed else 0
            if start >= ends[tp]:
                continue
            consumer.seek(tp, start)
            while await consumer.position(tp) < ends[tp]:
                if (await consumer.getmany(tp, timeout_ms=1000)).get(tp):
                    return False
        return True
    finally:
        await consumer.stop()
        await admin.close()


async def executions(client: Client, task_queue: str) -> list[tuple[str, str]]:
    """(workflow id, run id) of every execution on the task queue."""
    listing = client.list_workflows(
        f"TaskQueue = '{task_queue}'", page_size=200, rpc_timeout=VISIBILITY_RPC_TIMEOUT
    )
    return [(w.id, w.run_id) async for w in listing]


async def execution_count(client: Client, task_queue: str) -> int:
    query = f"TaskQueue = '{task_queue}'"
    return (await client.count_workflows(query, rpc_timeout=VISIBILITY_RPC_TIMEOUT)).count


async def assert_exactly_once(
    dsn: str, client: Client, running: RunningPipeline, orgs: Sequence[uuid.UUID]
) -> None:
    """Wait until the run settled, then: one of each chain event and one execution per
    organization, and a queue projection that agrees with both."""
    await eventually(
        lambda: started_count(dsn) == len(orgs), "every workflow_started", running, HANG
    )
    await eventually(lambda: consumed_everything(running), "every record committed", running, HANG)
    await eventually(lambda: not queue_mismatches(dsn, orgs), "the queue projection", running, HANG)
    queue = running.settings.temporal_task_queue

    async def visible() -> bool:  # Temporal's visibility store is eventually consistent
        return await execution_count(client, queue) >= len(orgs)

    await eventually(visible, "every execution visible in Temporal", running, HANG)

    counts = chain_counts(dsn)
    assert set(counts) == set(orgs)
    wrong = {org: dict(c) for org, c in counts.items() if c != Counter(CHAIN_HEAD)}
    assert not wrong, (
        f"{len(wrong)} organizations with a wrong chain, e.g. {list(wrong.items())[:3]}"
    )

    # A listing is paged, and an execution that closes between two pages can be listed
    # twice: an execution is its (workflow id, run id), a second one a second run id.
    runs = set(await executions(client, queue))
    per_id = Counter(workflow_id for workflow_id, _ in runs)
    assert set(per_id) == {events.workflow_id_for(str(org)) for org in orgs}
    assert max(per_id.values()) == 1, [w for w, n in per_id.items() if n > 1][:5]
    assert await execution_count(client, queue) == len(orgs)
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


@pytest.mark.timeout(1200)
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
    async with standin_worker(temporal_client, env):
        doomed = start_pipeline(
            {**env, "PIPELINE_KILL_AT": f"{point}:{KILL_POINTS[point]}"}, tmp_path, "doomed"
        )
        try:
            await eventually(
                lambda: slot_active(fresh_db, doomed.settings.slot_name), "the reader", doomed
            )
            emit_bootstraps(fresh_db, orgs)
            code = await wait_exit(doomed, f"the kill point {point}", HANG)
        finally:
            stop_pipeline(doomed, signal.SIGKILL)
        assert code == -signal.SIGKILL, f"exit {code}, not the kill point:\n{doomed.log_tail()}"
        started_before = started_count(fresh_db)
        assert started_before < ORGS, f"the kill at {point} came after the run had finished"

        restarted = start_pipeline(env, tmp_path, "restarted")
        try:
            await assert_exactly_once(fresh_db, temporal_client, restarted, orgs)
        finally:
            stop_pipeline(restarted)


# -- two replicas ---------------------------------------------------------------------------

REPLICA_ORGS = 200
LATE_ORGS = 50


async def members_with_partitions(running: RunningPipeline) -> int | None:
    """How many members of the stable consumer group hold partitions of the source topic
    (None while the group is rebalancing)."""
    settings = running.settings
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([settings.consumer_group])
    finally:
        await admin.close()
    # DescribeGroups v0-v2: (error_code, group_id, state, protocol_type, protocol, members),
    # each member (member_id, client_id, client_host, metadata, assignment).
    group = response.groups[0]
    if group[2] != "Stable":
        return None
    holders = 0
    for member in group[5]:
        assignment = ConsumerProtocolMemberAssignment.decode(member[4])
        if any(topic == settings.topic and parts for topic, parts in assignment.assignment):
            holders += 1
    return holders


async def reader_active(running: RunningPipeline) -> bool:
    return (await scrape_metrics(running)).get("pipeline_reader_active") == 1.0


@pytest.mark.timeout(1200)
async def test_two_replicas_one_reader_shared_partitions_and_takeover(
    fresh_db: str, kafka_bootstrap: str, temporal_client: Client, tmp_path: Path
) -> None:
    env = {
        **pipeline_env(
            fresh_db, kafka_bootstrap, temporal_client.service_client.config.target_host, tmp_path
        ),
        **FAST_GROUP_ENV,
    }
    # Same database, slot, topic and group; a web port and data directory of its own.
    twin_env = {
        **env,
        "PIPELINE_WEB_PORT": str(free_port()),
        "PIPELINE_DATA_DIR": str(tmp_path / "faust-twin"),
    }
    orgs = [uuid.uuid4() for _ in range(REPLICA_ORGS)]
    late = [uuid.uuid4() for _ in range(LATE_ORGS)]
    async with standin_worker(temporal_client, env):
        one = start_pipeline(env, tmp_path, "one")
        two: RunningPipeline | None = None
        try:
            # The second replica starts once the first streams. Before that, the new slot
            # is inactive while the first copies its snapshot, and a reader starting then
            # drops it as "a slot without a completed snapshot" (a known reader race).
            await eventually(lambda: slot_active(fresh_db, one.settings.slot_name), "a reader", one)
            two = start_pipeline(twin_env, tmp_path, "two")

            async def both_hold_partitions() -> bool:
                return two.alive() and await members_with_partitions(one) == 2

            await eventually(both_hold_partitions, "both replicas holding partitions", one, HANG)
            emit_bootstraps(fresh_db, orgs, per_transaction=50)
            await assert_exactly_once(fresh_db, temporal_client, one, orgs)
            assert two.alive(), two.log_tail()

            # One reader: exactly one replica holds the slot; the other says it waits.
            metrics = [await scrape_metrics(one), await scrape_metrics(two)]
            assert sorted(m.get("pipeline_reader_active", -1.0) for m in metrics) == [0.0, 1.0]
            reader, standby = (one, two) if metrics[0]["pipeline_reader_active"] else (two, one)
            assert "another reader is active; waiting to take over" in standby.log.read_text()
            # Shared partitions: both replicas' agents consumed records.
            for m in metrics:
                assert m.get("pipeline_events_consumed_total", 0.0) > 0

            # The reader dies without any cleanup: the standby takes the slot over, and
            # its partitions once the group notices, and new bootstraps flow end to end.
            stop_pipeline(reader, signal.SIGKILL)
            await eventually(lambda: reader_active(standby), "the standby reading", standby, HANG)
            emit_bootstraps(fresh_db, late)
            await assert_exactly_once(fresh_db, temporal_client, standby, orgs + late)
        finally:
            stop_pipeline(one)
            if two is not None:
                stop_pipeline(two)
