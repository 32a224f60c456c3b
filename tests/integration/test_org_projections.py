"""The organization and invitation projections, fed with the events of real bootstraps.

The bootstraps run on the real Temporal dev server and PostgreSQL; the events are then
read back and given positions from a fake but monotonic sequence (two events per commit
LSN, so idx matters), as the replication reader would.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import psycopg
import pytest
from temporalio.client import Client

from pipeline import events as ev
from pipeline.bootstrap.errors import EmailProviderError
from pipeline.bootstrap.inputs import Admin, BootstrapInput, BootstrapResult, RetryTuning
from pipeline.bootstrap.providers.email import EmailProvider, LocalEmailProvider, OutgoingEmail
from pipeline.bootstrap.settings import BootstrapSettings
from pipeline.bootstrap.worker import build_worker
from pipeline.bootstrap.workflows import OrganizationBootstrapWorkflow
from pipeline.eventstore import NewEvent, emit_sync
from pipeline.projections.event_row import EventRow
from pipeline.projections.invitations import (
    InvitationRow,
    apply_invitation_events,
    fold_invitations,
)
from pipeline.projections.organizations import (
    OrganizationRow,
    apply_organization_events,
    fold_organizations,
)
from replication.lsn import LSN, Position

pytestmark = pytest.mark.integration

FAST = RetryTuning(
    initial_interval_ms=100,
    maximum_interval_ms=400,
    provider_maximum_attempts=5,
    store_maximum_attempts=10,
    start_to_close_timeout_ms=15_000,
)


class RefusingEmail:
    """Email provider that refuses one address for good and accepts the others."""

    name = "refusing"

    def __init__(self, refused: str) -> None:
        self.refused = refused

    async def send(self, message: OutgoingEmail) -> None:
        if message.to == self.refused:
            raise EmailProviderError(f"550 {message.to}: no such user", retryable=False)


async def bootstrap(
    client: Client, dsn: str, email: EmailProvider
) -> tuple[BootstrapInput, BootstrapResult]:
    org_id = uuid.uuid4()
    admins = [Admin("alice@example.org", "admin"), Admin("bob@example.org", "owner")]
    subdomain = f"acme-{org_id.hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        job_id = emit_sync(
            conn,
            NewEvent(
                stream_id=org_id,
                stream_type=ev.STREAM_TYPE_ORGANIZATION,
                event_type=ev.BOOTSTRAP_INITIATED,
                event_data={
                    "name": "Acme",
                    "subdomain": subdomain,
                    "admins": [{"email": a.email, "role": a.role} for a in admins],
                },
                idempotency_key=f"test-request:{org_id}",
                event_metadata={"source": "test"},
            ),
        )
    request = BootstrapInput(str(org_id), str(job_id), "Acme", subdomain, admins)
    settings = BootstrapSettings(database_url=dsn, task_queue=f"proj-{uuid.uuid4()}", retry=FAST)
    async with build_worker(client, settings, email=email):
        result = await asyncio.wait_for(
            client.execute_workflow(
                OrganizationBootstrapWorkflow.run,
                request,
                id=ev.workflow_id_for(request.org_id),
                task_queue=settings.task_queue,
            ),
            120,
        )
    return request, result


def positioned_events(dsn: str, org_id: str) -> list[dict[str, object]]:
    """The stream's rows with positions: two events per fake commit LSN."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT to_jsonb(d) FROM domain_events d WHERE stream_id = %s ORDER BY stream_version",
            (org_id,),
        ).fetchall()
    events = []
    for n, (row,) in enumerate(rows):
        lsn = LSN(0x1_0000_0000 + 0x100 * (n // 2))
        events.append({**row, "commit_lsn": str(lsn), "idx": n % 2})
    return events


async def apply_all(dsn: str, events: list[dict[str, object]]) -> tuple[int, int]:
    async with await psycopg.AsyncConnection.connect(dsn) as conn, conn.transaction():
        orgs = await apply_organization_events(conn, events)
        invitations = await apply_invitation_events(conn, events)
    return orgs, invitations


def org_rows(dsn: str) -> dict[uuid.UUID, OrganizationRow]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT id, name, subdomain, subdomain_metadata, status, failure_reason, "
            "created_at, updated_at, last_commit_lsn::text, last_idx FROM organizations_projection"
        ).fetchall()
    return {
        r[0]: OrganizationRow(*r[:8], last_position=Position(LSN.parse(r[8]), r[9])) for r in rows
    }


def invitation_rows(dsn: str) -> dict[uuid.UUID, InvitationRow]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT id, organization_id, email, role, status, token_hash, expires_at, created_at, "
            "updated_at, last_commit_lsn::text, last_idx FROM invitations_projection"
        ).fetchall()
    return {
        r[0]: InvitationRow(*r[:9], last_position=Position(LSN.parse(r[9]), r[10])) for r in rows
    }


async def test_completed_bootstrap_projects_and_reapplying_is_a_no_op(
    temporal_client: Client, fresh_db: str, tmp_path: Path
) -> None:
    email = LocalEmailProvider(tmp_path, "no-reply@example.test")
    request, result = await bootstrap(temporal_client, fresh_db, email)
    assert result.status == "completed"
    events = positioned_events(fresh_db, request.org_id)

    changed = await apply_all(fresh_db, events)
    # initiated, organization.created, dns.created, completed; 2 x (invited, email sent).
    assert changed == (4, 4)
    orgs = org_rows(fresh_db)
    org = orgs[uuid.UUID(request.org_id)]
    assert (org.name, org.subdomain, org.status, org.failure_reason) == (
        "Acme",
        request.subdomain,
        "active",
        None,
    )
    dns = next(e for e in events if e["event_type"] == ev.DNS_RECORD_CREATED)["event_data"]
    assert isinstance(dns, dict)
    assert org.subdomain_metadata == {
        "subdomain": request.subdomain,
        "dns_state": "created",
        "fqdn": result.fqdn,
        "record_id": dns["record_id"],
        "record_type": "CNAME",
        "provider": "local",
    }
    completed = next(e for e in events if e["event_type"] == ev.BOOTSTRAP_COMPLETED)
    assert org.last_position == Position(LSN.parse(str(completed["commit_lsn"])), completed["idx"])
    invitations = invitation_rows(fresh_db)
    assert {(i.email, i.role, i.status, i.token_hash) for i in invitations.values()} == {
        (inv.email, inv.role, "sent", inv.token_hash) for inv in result.invitations
    }
    # The SQL and the pure fold agree.
    assert orgs == fold_organizations(events)
    assert invitations == fold_invitations(events)

    # Redelivery of everything, then of an overlapping tail: nothing changes.
    assert await apply_all(fresh_db, events) == (0, 0)
    assert await apply_all(fresh_db, events[3:]) == (0, 0)
    assert org_rows(fresh_db) == orgs
    assert invitation_rows(fresh_db) == invitations


async def test_failed_bootstrap_projects_failure_revocations_and_dns_removal(
    temporal_client: Client, fresh_db: str
) -> None:
    request, result = await bootstrap(temporal_client, fresh_db, RefusingEmail("bob@example.org"))
    assert result.status == "failed" and result.stage == "email"
    events = positioned_events(fresh_db, request.org_id)

    # Applied in two batches that overlap, as after a consumer restart.
    await apply_all(fresh_db, events[:7])
    await apply_all(fresh_db, events[5:])
    org = org_rows(fresh_db)[uuid.UUID(request.org_id)]
    assert org.status == "failed"
    assert org.failure_reason is not None and org.failure_reason.startswith("email: ")
    assert "550" in org.failure_reason
    assert org.subdomain_metadata["dns_state"] == "removed"
    statuses = {i.email: i.status for i in invitation_rows(fresh_db).values()}
    assert statuses == {"alice@example.org": "revoked", "bob@example.org": "revoked"}
    assert org_rows(fresh_db) == fold_organizations(events)
    assert invitation_rows(fresh_db) == fold_invitations(events)


async def test_apply_leaves_the_transaction_to_the_caller(fresh_db: str) -> None:
    org_id = uuid.uuid4()
    event: EventRow = {
        "id": str(uuid.uuid4()),
        "stream_id": str(org_id),
        "event_type": ev.BOOTSTRAP_INITIATED,
        "event_data": {"name": "Acme", "subdomain": "acme", "admins": []},
        "created_at": "2025-11-26T03:01:01.300000+00:00",
        "commit_lsn": "0/16B45F0",
        "idx": 0,
    }
    async with await psycopg.AsyncConnection.connect(fresh_db) as conn:
        async with conn.transaction(force_rollback=True):
            assert await apply_organization_events(conn, [event]) == 1
        cur = await conn.execute("SELECT count(*) FROM organizations_projection")
        assert await cur.fetchone() == (0,)
