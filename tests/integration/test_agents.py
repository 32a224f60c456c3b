"""The agents on the real services: Kafka → Faust (a real `python -m pipeline.app`
subprocess) → PostgreSQL and Temporal: the chain runs once, a redelivery changes nothing,
and a job waits out a Temporal outage (the harness: agents_app.py; dead letters and
routing: test_agents_routing.py)."""

from __future__ import annotations

import asyncio
import socket
import uuid
from pathlib import Path

import psycopg
import pytest
from temporalio.client import Client

from pipeline import events as ev
from pipeline.dev.layout import DevLayout
from tests.integration import agents_app
from tests.integration.agents_app import (
    WAIT_SECONDS,
    Setup,
    all_consumed,
    app_env,
    checkpoint_positions,
    emit_initiated,
    eventually,
    executions,
    queue_row,
    running_app,
    services,
    stream_events,
)

pytestmark = pytest.mark.integration

# The harness's fixture, under the name the tests ask for.
setup = agents_app.setup


async def test_chain_runs_once_and_redelivery_changes_nothing(
    setup: Setup,
    temporal_client: Client,
    kafka_bootstrap: str,
    tmp_path: Path,
    dev_layout: DevLayout,
) -> None:
    settings = setup.settings
    address = dev_layout.temporal_address
    org = uuid.uuid4()
    workflow_id = ev.workflow_id_for(str(org))
    async with services(setup, temporal_client, kafka_bootstrap) as feeder:
        env = app_env(settings, address, settings.consumer_group, tmp_path)
        with running_app(env, tmp_path) as app:
            job_id = emit_initiated(
                settings.database_url.get_secret_value(), org, f"acme-{org.hex[:8]}"
            )

            async def chain_done() -> bool:
                row = queue_row(settings.database_url.get_secret_value(), job_id)
                return (
                    row is not None
                    and row[3] is not None
                    and len(feeder.produced) == 4
                    and await all_consumed(app, 4)
                )

            await eventually(chain_done, "initiated → … → workflow_started", app)

            events_before = stream_events(settings.database_url.get_secret_value(), org)
            assert [e[0] for e in events_before] == [
                ev.BOOTSTRAP_INITIATED,
                ev.QUEUE_PENDING,
                ev.QUEUE_CLAIMED,
                ev.BOOTSTRAP_WORKFLOW_STARTED,
            ]
            pending, claimed, started = (e[1] for e in events_before[1:])
            assert isinstance(pending, dict) and isinstance(claimed, dict)
            assert isinstance(started, dict)
            assert pending["job_id"] == str(job_id) == claimed["job_id"] == started["job_id"]
            assert pending["workflow_id"] == workflow_id == started["workflow_id"]
            assert pending["input"] == {
                "org_id": str(org),
                "name": "Acme",
                "subdomain": f"acme-{org.hex[:8]}",
                "admins": [{"email": "ada@example.com", "role": "organization_admin"}],
            }
            assert claimed["worker_id"] == app.worker_id
            assert events_before[1][3] == f"{job_id}:{ev.QUEUE_PENDING}"
            assert events_before[1][2] == {
                "causation_id": str(job_id),
                "source": "pipeline.enqueue",
            }

            runs = await executions(temporal_client, workflow_id)
            assert runs == [started["run_id"]]
            handle = temporal_client.get_workflow_handle(workflow_id)
            assert await asyncio.wait_for(handle.result(), WAIT_SECONDS) == str(
                job_id
            )  # the starter passed input + job_id

            row = queue_row(settings.database_url.get_secret_value(), job_id)
            assert row is not None
            assert row[:8] == (
                "processing",
                app.worker_id,
                workflow_id,
                started["run_id"],
                1,
                ev.BOOTSTRAP_INITIATED,
                True,
                True,
            )
            consumer = f"{settings.consumer_group}.projection"
            checkpoints = checkpoint_positions(settings.database_url.get_secret_value(), consumer)
            last_lsn = dict(feeder.produced[-1][2])["commit_lsn"].decode()
            assert checkpoints and checkpoints[0][0] == settings.topic
            assert last_lsn in {c[2] for c in checkpoints}

            # The enqueue agent started the job (the handoff); the starter agent then got
            # the pending event from Kafka and found the job started: in the event store
            # (skipped) or, if it raced the handoff, in Temporal (USE_EXISTING).
            def not_started_again() -> float:
                return app.metric("pipeline_workflow_starts_total", outcome="skipped") + app.metric(
                    "pipeline_workflow_starts_total", outcome="already_started"
                )

            assert app.metric("pipeline_workflow_starts_total", outcome="started") == 1
            assert not_started_again() == 1

            # Redelivery: the same records again, same positions (at-least-once Kafka).
            for record in list(feeder.produced):
                await feeder.send(*record)

            async def redelivered() -> bool:
                return await all_consumed(app, 8)

            await eventually(redelivered, "the redelivered records", app)
            # Both paths see the job started: the handoff of the redelivered initiated
            # event and the starter agent's redelivered pending event.
            assert not_started_again() == 3
            assert app.metric("pipeline_workflow_starts_total", outcome="started") == 1
            assert stream_events(settings.database_url.get_secret_value(), org) == events_before
            assert queue_row(settings.database_url.get_secret_value(), job_id) == row
            assert (
                checkpoint_positions(settings.database_url.get_secret_value(), consumer)
                == checkpoints
            )

        # A replay: a new consumer group reads the whole topic again from the start.
        env2 = app_env(settings, address, f"{settings.consumer_group}-replay", tmp_path)
        with running_app(env2, tmp_path) as replay:

            async def replayed() -> bool:
                return await all_consumed(replay, 8)

            await eventually(replayed, "the replay of the whole topic", replay)
            assert replay.metric("pipeline_workflow_starts_total", outcome="started") == 0
            assert stream_events(settings.database_url.get_secret_value(), org) == events_before
            assert queue_row(settings.database_url.get_secret_value(), job_id) == row
            assert len(feeder.produced) == 4
    assert await executions(temporal_client, workflow_id) == runs


async def test_a_job_is_not_dropped_while_temporal_is_unreachable(
    setup: Setup,
    temporal_client: Client,
    kafka_bootstrap: str,
    tmp_path: Path,
    dev_layout: DevLayout,
) -> None:
    settings = setup.settings
    org = uuid.uuid4()
    workflow_id = ev.workflow_id_for(str(org))
    with socket.socket() as closed:  # a port nobody listens on: Temporal "down"
        closed.bind(("127.0.0.1", 0))
        down = f"127.0.0.1:{closed.getsockname()[1]}"
    async with services(setup, temporal_client, kafka_bootstrap) as feeder:
        env = app_env(settings, down, settings.consumer_group, tmp_path)
        with running_app(env, tmp_path) as app:
            job_id = emit_initiated(
                settings.database_url.get_secret_value(), org, f"down-{org.hex[:8]}"
            )

            async def retrying() -> bool:
                return app.metric("pipeline_workflow_starts_total", outcome="failed") >= 2

            await eventually(retrying, "start attempts against an unreachable Temporal", app)
            types = [e[0] for e in stream_events(settings.database_url.get_secret_value(), org)]
            assert types == [ev.BOOTSTRAP_INITIATED, ev.QUEUE_PENDING, ev.QUEUE_CLAIMED]
            assert await executions(temporal_client, workflow_id) == []
        # The same process restarted (same group, instance id and web port, as a pod keeps
        # them; Faust's assignor asserts that a static member's web URL did not change),
        # now with Temporal reachable: the unacked pending job comes back.
        env = {**env, "PIPELINE_TEMPORAL_ADDRESS": dev_layout.temporal_address}
        with running_app(env, tmp_path) as again:

            async def started() -> bool:
                row = queue_row(settings.database_url.get_secret_value(), job_id)
                return row is not None and row[3] is not None

            await eventually(started, "the start after Temporal came back", again)
    types = [e[0] for e in stream_events(settings.database_url.get_secret_value(), org)]
    assert types == [
        ev.BOOTSTRAP_INITIATED,
        ev.QUEUE_PENDING,
        ev.QUEUE_CLAIMED,
        ev.BOOTSTRAP_WORKFLOW_STARTED,
    ]
    assert len(await executions(temporal_client, workflow_id)) == 1
    assert len(feeder.produced) == 4


def _emit_sent(dsn: str, org: uuid.UUID, count: int) -> None:
    """``count`` invitation.email.sent events on the organization's own stream (so in its
    partition, behind its initiated event), one transaction each, in plain SQL."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for _ in range(count):
            conn.execute(
                "SELECT api.emit_domain_event(p_stream_id => %s, p_stream_type => "
                "'organization', p_event_type => 'invitation.email.sent', p_event_data => "
                "jsonb_build_object('invitation_id', gen_random_uuid(), 'email', "
                "'held@example.test'), p_event_metadata => '{\"source\": \"test\"}'::jsonb)",
                (org,),
            )


async def test_records_held_behind_a_waiting_start_are_bounded_and_none_is_lost(
    setup: Setup,
    temporal_client: Client,
    kafka_bootstrap: str,
    tmp_path: Path,
    dev_layout: DevLayout,
) -> None:
    """A start waits on an unreachable Temporal; every later record of its partition waits
    to be acked behind it. Past PIPELINE_MAX_UNACKED_RECORDS the edge takes no more (the
    records wait in Kafka, not in memory); once Temporal is back, all of them are folded and
    the workflow starts once."""
    settings = setup.settings
    dsn = settings.database_url.get_secret_value()
    org = uuid.uuid4()
    workflow_id = ev.workflow_id_for(str(org))
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        down = f"127.0.0.1:{closed.getsockname()[1]}"
    async with services(setup, temporal_client, kafka_bootstrap) as feeder:
        env = app_env(settings, down, settings.consumer_group, tmp_path)
        env["PIPELINE_MAX_UNACKED_RECORDS"] = "20"
        with running_app(env, tmp_path) as app:
            emit_initiated(dsn, org, f"held-{org.hex[:8]}")

            async def retrying() -> bool:
                return app.metric("pipeline_workflow_starts_total", outcome="failed") >= 1

            await eventually(retrying, "start attempts against an unreachable Temporal", app)
            await asyncio.to_thread(_emit_sent, dsn, org, 30)

            async def paused() -> bool:
                return "holding" in app.log.read_text(errors="replace")

            await eventually(paused, "the edge's pause for acks", app)
            held = app.metric("pipeline_events_consumed_total", agent="projection")
            assert held >= 20  # past the bound (one batch may cross it)
            await asyncio.to_thread(_emit_sent, dsn, org, 30)
            await asyncio.sleep(5)  # the feeder produces them at once; the edge must not take them
            assert app.metric("pipeline_events_consumed_total", agent="projection") == held
            # initiated, pending, claimed and the 60: the feeder produced every one.
            assert len(feeder.produced) == 63
            last_lsn = dict(feeder.produced[-1][2])["commit_lsn"].decode()
        env = {**env, "PIPELINE_TEMPORAL_ADDRESS": dev_layout.temporal_address}
        consumer = f"{settings.consumer_group}.projection"
        with running_app(env, tmp_path) as again:

            async def everything() -> bool:
                types = [e[0] for e in stream_events(dsn, org)]
                with psycopg.connect(dsn) as conn:
                    row = conn.execute(
                        "SELECT count(*) FROM pipeline_checkpoints WHERE consumer = %s "
                        "AND commit_lsn >= %s::pg_lsn",
                        (consumer, last_lsn),
                    ).fetchone()
                folded = row is not None and row[0] >= 1
                return ev.BOOTSTRAP_WORKFLOW_STARTED in types and folded

            await eventually(everything, "every record folded after Temporal came back", again)
    assert len(await executions(temporal_client, workflow_id)) == 1
    types = [e[0] for e in stream_events(dsn, org)]
    assert types.count("invitation.email.sent") == 60
    assert types.count(ev.BOOTSTRAP_WORKFLOW_STARTED) == 1
