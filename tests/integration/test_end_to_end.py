"""The whole pipeline as users run it: `pipeline run` (reader + agents) as a process, the
real bootstrap worker, real PostgreSQL, Kafka and Temporal. The event chain, replay,
status and metrics."""

from __future__ import annotations

import asyncio
import subprocess
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import orjson
import psycopg
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from psycopg.types.json import Jsonb
from temporalio.client import Client

from pipeline import events
from pipeline.invitations.tokens import token_hash
from pipeline.replay import ReplayRangeError, replay
from replication.lsn import LSN
from tests.integration.kafka_helpers import read_topic
from tests.integration.pipeline_process import (
    RunningPipeline,
    eml_token,
    event_types,
    eventually,
    pipeline_and_worker,
    pipeline_cli,
    slot_active,
)

pytestmark = pytest.mark.integration

CHAIN_HEAD = [
    events.BOOTSTRAP_INITIATED,
    events.QUEUE_PENDING,
    events.QUEUE_CLAIMED,
    events.BOOTSTRAP_WORKFLOW_STARTED,
]


def emit_bootstrap(dsn: str, org: uuid.UUID, signature: str) -> None:
    data = Jsonb(
        {
            "name": f"Org {org.hex[:6]}",
            "subdomain": f"e2e-{org.hex[:8]}",
            "admins": [
                {"email": f"admin-{org.hex[:6]}@example.test", "role": "organization_admin"},
                {"email": f"ops-{org.hex[:6]}@example.test", "role": "organization_admin"},
            ],
        }
    )
    meta = Jsonb({"source": "test"})
    with psycopg.connect(dsn, autocommit=True) as conn:
        if signature == "stream":
            conn.execute(
                "SELECT api.emit_domain_event(p_stream_id => %s, p_stream_type => 'organization', "
                "p_event_type => %s, p_event_data => %s, p_event_metadata => %s)",
                (org, events.BOOTSTRAP_INITIATED, data, meta),
            )
        else:
            conn.execute(
                "SELECT api.emit_domain_event(p_event_id => %s, p_event_type => %s, "
                "p_aggregate_type => 'organization', p_aggregate_id => %s, p_event_data => %s, "
                "p_event_metadata => %s)",
                (uuid.uuid4(), events.BOOTSTRAP_INITIATED, org, data, meta),
            )


async def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [pipeline_cli(), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


async def executions(client: Client, workflow_id: str) -> int:
    count = await client.count_workflows(f"WorkflowId = '{workflow_id}'")
    return count.count


def snapshot(dsn: str) -> dict[str, object]:
    """Everything replay must not change when the state is already right."""
    with psycopg.connect(dsn) as conn:
        return {
            "events": conn.execute("SELECT count(*) FROM domain_events").fetchone(),
            "queue": conn.execute(
                "SELECT job_id, status, workflow_id, run_id, last_commit_lsn::text, last_idx "
                "FROM workflow_queue_projection ORDER BY job_id"
            ).fetchall(),
            "orgs": conn.execute(
                "SELECT id, status, subdomain_metadata, last_commit_lsn::text FROM organizations_projection ORDER BY id"
            ).fetchall(),
            "invitations": conn.execute(
                "SELECT id, status, token_hash FROM invitations_projection ORDER BY id"
            ).fetchall(),
        }


async def wait_completed(dsn: str, org: uuid.UUID, running: RunningPipeline) -> None:
    await eventually(
        lambda: events.QUEUE_COMPLETED in event_types(dsn, org), f"bootstrap of {org}", running
    )

    def projected() -> bool:
        with psycopg.connect(dsn) as conn:
            row = conn.execute(
                "SELECT status FROM workflow_queue_projection WHERE stream_id = %s", (org,)
            ).fetchone()
            invitations = conn.execute(
                "SELECT count(*) FROM invitations_projection WHERE organization_id = %s AND status = 'sent'",
                (org,),
            ).fetchone()
        return row == ("completed",) and invitations == (2,)

    await eventually(projected, f"projections of {org}", running)


@pytest.mark.parametrize(
    ("signature", "least_privilege"),
    [("stream", False), ("aggregate", False), ("stream", True)],
    ids=["stream", "aggregate", "stream-least-privilege-roles"],
)
async def test_bootstrap_chain_then_replay_repairs_and_changes_nothing_else(
    fresh_db: str,
    kafka_bootstrap: str,
    temporal_client: Client,
    tmp_path: Path,
    signature: str,
    least_privilege: bool,
) -> None:
    """With ``least_privilege`` the reader, agents, worker, replay and status run as the
    roles of sql/roles.sql (docs/security.md); the test's own reads and damage stay the
    superuser's."""
    async with pipeline_and_worker(
        fresh_db, kafka_bootstrap, temporal_client, tmp_path, least_privilege=least_privilege
    ) as running:
        settings = running.settings
        await eventually(lambda: slot_active(fresh_db, settings.slot_name), "the reader", running)
        org = uuid.uuid4()
        emit_bootstrap(fresh_db, org, signature)
        await wait_completed(fresh_db, org, running)

        chain = event_types(fresh_db, org)
        assert chain[:4] == CHAIN_HEAD
        assert chain[-1] == events.QUEUE_COMPLETED
        for event_type in chain:
            assert chain.count(event_type) == 1 or event_type in {
                events.USER_INVITED,
                events.INVITATION_EMAIL_SENT,
            }
        assert chain.count(events.USER_INVITED) == 2
        workflow_id = events.workflow_id_for(str(org))

        async def one_execution() -> bool:  # visibility is eventually consistent
            return await executions(temporal_client, workflow_id) == 1

        await eventually(one_execution, "Temporal's visibility of the execution", running)
        with psycopg.connect(fresh_db) as conn:
            org_row = conn.execute(
                "SELECT status, subdomain, subdomain_metadata->>'fqdn' FROM organizations_projection WHERE id = %s",
                (org,),
            ).fetchone()
        assert org_row is not None and org_row[0] == "active"
        assert org_row[1] == f"e2e-{org.hex[:8]}"
        # The emails were delivered (local provider: one message file per admin), each
        # with a token whose hash is its invitation's.
        with psycopg.connect(fresh_db) as conn:
            hashes = {
                str(r[0])
                for r in conn.execute(
                    "SELECT token_hash FROM invitations_projection WHERE organization_id = %s",
                    (org,),
                ).fetchall()
            }
        outbox = Path(running.env["PIPELINE_EMAIL_OUTBOX_DIR"])
        messages = [p.read_text() for p in outbox.glob("*.eml")]
        assert len(hashes) == 2
        assert {token_hash(eml_token(m)) for m in messages} == hashes

        # Metrics moved on the web port of `pipeline run`.
        page = await asyncio.to_thread(http_get, f"http://127.0.0.1:{settings.web_port}/metrics")
        assert '"status":"ok"' in await asyncio.to_thread(
            http_get, f"http://127.0.0.1:{settings.web_port}/healthz"
        )

        async def ready() -> bool:
            # 503 while the consumer group rebalances, e.g. on a busy machine.
            try:
                body = await asyncio.to_thread(
                    http_get, f"http://127.0.0.1:{settings.web_port}/readyz"
                )
            except urllib.error.HTTPError:
                return False
            return '"status":"ready"' in body

        await eventually(ready, "/readyz", running)
        assert 'pipeline_workflow_starts_total{outcome="started"} 1.0' in page
        assert "pipeline_reader_active 1.0" in page
        assert "pipeline_events_consumed_total" in page

        if least_privilege:
            with psycopg.connect(fresh_db) as conn:
                users = {
                    str(r[0])
                    for r in conn.execute(
                        "SELECT usename FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    ).fetchall()
                }
            assert (
                {"pipeline_reader", "pipeline_agents"}
                <= users
                <= {
                    "pipeline_reader",
                    "pipeline_agents",
                    "pipeline_worker",
                }
            )
        # `pipeline check` passes, and warns when a DSN logs in as a superuser.
        checked = await run_cli(["check"], running.env)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        warned = "WARNING: connected as superuser" in checked.stdout + checked.stderr
        assert warned == (not least_privilege), checked.stdout + checked.stderr

        # Status: the documented JSON schema.
        result = await run_cli(["status", "--json"], running.env)
        assert result.returncode == 0, result.stderr
        status = orjson.loads(result.stdout)
        assert status["slot"]["active"] is True
        assert status["slot"]["exists"] is True
        assert LSN.parse(status["slot"]["confirmed_flush_lsn"]) > LSN.ZERO
        assert isinstance(status["slot"]["lag_bytes"], int)
        assert status["reader"]["holder_pid"] == status["slot"]["active_pid"]
        assert status["queue"]["completed"] == 1
        assert {p["partition"] for p in status["kafka"]["partitions"]} == {0, 1, 2, 3}
        assert status["kafka"]["dead_letters"] == 0

        before = snapshot(fresh_db)

        # A replay over a fully processed range changes nothing.
        summary = await replay(settings, LSN.ZERO)
        assert summary.events_redriven == len(chain)
        assert summary.events_emitted == 0
        assert summary.workflows_started == 0
        assert snapshot(fresh_db) == before

        # Lose the projection rows; --dry-run changes nothing; a replay repairs them.
        with psycopg.connect(fresh_db, autocommit=True) as conn:
            conn.execute("DELETE FROM workflow_queue_projection")
            conn.execute("DELETE FROM organizations_projection")
            conn.execute("DELETE FROM invitations_projection")
        damaged = snapshot(fresh_db)
        dry = await replay(settings, LSN.ZERO, dry_run=True)
        assert dry.events_redriven == len(chain)
        assert snapshot(fresh_db) == damaged
        repaired = await replay(settings, LSN.ZERO)
        assert repaired.events_emitted == 0
        assert repaired.projection_rows_repaired > 0
        assert snapshot(fresh_db) == before
        assert await executions(temporal_client, workflow_id) == 1


async def test_replay_refuses_an_lsn_older_than_the_retained_log(
    fresh_db: str, kafka_bootstrap: str, temporal_client: Client, tmp_path: Path
) -> None:
    async with pipeline_and_worker(fresh_db, kafka_bootstrap, temporal_client, tmp_path) as running:
        settings = running.settings
        await eventually(lambda: slot_active(fresh_db, settings.slot_name), "the reader", running)
        org = uuid.uuid4()
        emit_bootstrap(fresh_db, org, "stream")
        await wait_completed(fresh_db, org, running)
    # Retention deleted the head of every partition that has records.
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([settings.topic])
        parts = [
            TopicPartition(settings.topic, int(p["partition"])) for p in described[0]["partitions"]
        ]
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap)
        await consumer.start()
        ends = await consumer.end_offsets(parts)
        await consumer.stop()
        await admin.delete_records(
            {tp: RecordsToDelete(before_offset=1) for tp in parts if ends[tp] > 1}
        )
    finally:
        await admin.close()
    with pytest.raises(ReplayRangeError) as info:
        await replay(settings, LSN.ZERO)
    oldest = info.value.oldest
    assert oldest is not None and oldest > LSN.ZERO
    assert f"--from-lsn {oldest} or later" in str(info.value)
    result = await run_cli(["replay", "--from-lsn", "0/0"], running.env)
    assert result.returncode == 2
    assert str(oldest) in result.stderr
    # From the oldest retained LSN on, replay works and changes nothing.
    summary = await replay(settings, oldest)
    assert summary.events_emitted == 0


async def test_invalid_bootstrap_events_are_dead_lettered_with_the_schema_path(
    fresh_db: str, kafka_bootstrap: str, temporal_client: Client, tmp_path: Path
) -> None:
    """Through the real path (emit_domain_event -> WAL -> Kafka -> agents): invalid
    initiated events go to the dead-letter topic with the schema path of the failure, and
    the next valid one is processed."""
    async with pipeline_and_worker(fresh_db, kafka_bootstrap, temporal_client, tmp_path) as running:
        settings = running.settings
        await eventually(lambda: slot_active(fresh_db, settings.slot_name), "the reader", running)
        bad_label, no_email, good = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        with psycopg.connect(fresh_db, autocommit=True) as conn:
            for org, data in (
                (
                    bad_label,
                    {
                        "name": "Bad",
                        "subdomain": "Not_A_Label!",
                        "admins": [{"email": "a@x.test", "role": "admin"}],
                    },
                ),
                (
                    no_email,
                    {"name": "NoMail", "subdomain": "nomail", "admins": [{"role": "admin"}]},
                ),
            ):
                conn.execute(
                    "SELECT api.emit_domain_event(p_stream_id => %s, p_stream_type => 'organization', "
                    "p_event_type => %s, p_event_data => %s)",
                    (org, events.BOOTSTRAP_INITIATED, Jsonb(data)),
                )
        emit_bootstrap(fresh_db, good, "stream")
        await wait_completed(fresh_db, good, running)
        dead = await read_topic(kafka_bootstrap, settings.dead_letter_topic, 2)
    assert event_types(fresh_db, bad_label) == [events.BOOTSTRAP_INITIATED]
    assert event_types(fresh_db, no_email) == [events.BOOTSTRAP_INITIATED]
    reasons = {r.key: r.headers["reason"].decode() for r in dead}
    assert "event_data.subdomain" in reasons[str(bad_label).encode()]
    assert "event_data.admins[0].email" in reasons[str(no_email).encode()]
