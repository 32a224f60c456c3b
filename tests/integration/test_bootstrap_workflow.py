"""The bootstrap workflow against the real Temporal dev server, PostgreSQL and SMTP.

One worker per test on a uuid4 task queue (samples-python style); the SMTP server is
aiosmtpd on a free loopback port; retries are shortened through the settings (the harness: bootstrap_harness.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from pathlib import Path

import psycopg
import pytest
from aiosmtpd.controller import Controller
from temporalio.client import Client

from pipeline import events as ev
from pipeline.bootstrap.inputs import Admin
from pipeline.bootstrap.worker import build_worker, run_worker
from pipeline.dev.layout import DevLayout
from pipeline.invitations.tokens import token_hash
from tests.integration.bootstrap_harness import (
    RESULT_TIMEOUT,
    Mailbox,
    SlowMailbox,
    attempts,
    attempts_in_flight,
    initiate,
    make_settings,
    run_bootstrap,
    smtp_server,
    start,
    stored_events,
)
from tests.integration.pipeline_process import emailed_token, eml_token
from tests.integration.ports import free_port

pytestmark = pytest.mark.integration


HAPPY_CHAIN = [
    ev.BOOTSTRAP_INITIATED,
    ev.ORGANIZATION_CREATED,
    ev.DNS_RECORD_CREATED,
    ev.USER_INVITED,
    ev.USER_INVITED,
    ev.INVITATION_EMAIL_SENT,
    ev.INVITATION_EMAIL_SENT,
    ev.BOOTSTRAP_COMPLETED,
    ev.QUEUE_COMPLETED,
]


async def test_happy_path_emits_the_chain_and_mails_each_admin(
    temporal_client: Client, fresh_db: str
) -> None:
    mailbox = Mailbox()
    port = free_port()
    settings = make_settings(fresh_db, port)
    request = initiate(fresh_db)
    with smtp_server(mailbox, port):
        result, _ = await run_bootstrap(temporal_client, settings, request)

    assert result.status == "completed", result
    assert result.fqdn == f"{request.subdomain}.example.test"
    events = stored_events(fresh_db, request.org_id)
    assert [t for t, _ in events] == HAPPY_CHAIN
    invited = [data for t, data in events if t == ev.USER_INVITED]
    assert [d["email"] for d in invited] == ["alice@example.org", "bob@example.org"]
    assert {i.token_hash for i in result.invitations} == {d["token_hash"] for d in invited}
    assert all("token" not in d for d in invited)
    dns = next(data for t, data in events if t == ev.DNS_RECORD_CREATED)
    assert dns["fqdn"] == result.fqdn and dns["provider"] == "local"
    assert events[-1][1] == {"job_id": request.job_id, "workflow_id": result.workflow_id}

    assert sorted(m["To"] for m in mailbox.messages) == ["alice@example.org", "bob@example.org"]
    for invitation in result.invitations:
        message = next(m for m in mailbox.messages if m["To"] == invitation.email)
        body = message.get_content()
        token = emailed_token(body)
        assert token_hash(token) == invitation.token_hash
        assert f"https://{result.fqdn}/invitations/accept?token={token}" in body
        assert f"invitation token: {token}" in body
        assert all(token not in str(data) for _, data in events)
        assert (
            message["Message-ID"].strip()
            == f"<invitation-{invitation.invitation_id}@{result.fqdn}>"
        )
    with psycopg.connect(fresh_db) as conn:
        row = conn.execute(
            "SELECT organization_id::text, content FROM dns_records WHERE fqdn = %s", (result.fqdn,)
        ).fetchone()
    assert row == (request.org_id, "example.test")

    # A second run of the same bootstrap (same workflow id) is a no-op: every step finds
    # its event, the invitations come back with their first token hashes, no email is resent.
    with smtp_server(mailbox, port):
        again, _ = await run_bootstrap(temporal_client, settings, request)
    assert again.status == "completed"
    assert [i.token_hash for i in again.invitations] == [i.token_hash for i in result.invitations]
    assert stored_events(fresh_db, request.org_id) == events
    assert len(mailbox.messages) == 2


async def test_dns_refused_permanently_compensates_and_records_the_failure(
    temporal_client: Client, fresh_db: str
) -> None:
    request = initiate(fresh_db)
    fqdn = f"{request.subdomain}.example.test"
    squatter = str(uuid.uuid4())
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO dns_records (fqdn, record_type, content, organization_id) "
            "VALUES (%s, 'CNAME', 'elsewhere.test', %s)",
            (fqdn, squatter),
        )
    settings = make_settings(fresh_db, free_port())
    result, handle = await run_bootstrap(temporal_client, settings, request)

    assert result.status == "failed" and result.stage == "dns"
    assert "already exists for organization" in (result.reason or "")
    assert result.compensated == ["no dns record to remove"]
    assert result.compensation_errors == []
    seen = await attempts(handle)
    assert seen["bootstrap.create_dns_record"] == [1]  # permanent: never retried
    assert seen["bootstrap.remove_dns_record"] == [1]  # compensation ran
    events = stored_events(fresh_db, request.org_id)
    assert [t for t, _ in events] == [
        ev.BOOTSTRAP_INITIATED,
        ev.ORGANIZATION_CREATED,
        ev.BOOTSTRAP_FAILED,
        ev.QUEUE_FAILED,
    ]
    failed = events[2][1]
    assert failed["stage"] == "dns" and "already exists" in str(failed["reason"])
    assert events[3][1]["error"] == failed["reason"]
    # The other organization's record survives our compensation.
    with psycopg.connect(fresh_db) as conn:
        owner = conn.execute(
            "SELECT organization_id::text FROM dns_records WHERE fqdn = %s", (fqdn,)
        ).fetchone()
    assert owner == (squatter,)


async def test_email_refused_permanently_revokes_invitations_and_removes_dns(
    temporal_client: Client, fresh_db: str
) -> None:
    mailbox = Mailbox(refuse=frozenset({"bob@example.org"}))
    port = free_port()
    settings = make_settings(fresh_db, port)
    request = initiate(fresh_db)
    with smtp_server(mailbox, port):
        result, _ = await run_bootstrap(temporal_client, settings, request)

    assert result.status == "failed" and result.stage == "email", result
    assert "550" in (result.reason or "")
    assert result.compensated[0] == "revoked 2 invitation(s)"
    assert result.compensated[1].startswith("removed dns record ")
    events = stored_events(fresh_db, request.org_id)
    assert [t for t, _ in events] == [
        ev.BOOTSTRAP_INITIATED,
        ev.ORGANIZATION_CREATED,
        ev.DNS_RECORD_CREATED,
        ev.USER_INVITED,
        ev.USER_INVITED,
        ev.INVITATION_EMAIL_SENT,
        ev.INVITATION_REVOKED,
        ev.INVITATION_REVOKED,
        ev.DNS_RECORD_REMOVED,
        ev.BOOTSTRAP_FAILED,
        ev.QUEUE_FAILED,
    ]
    revoked = {d["invitation_id"] for t, d in events if t == ev.INVITATION_REVOKED}
    assert revoked == {i.invitation_id for i in result.invitations}
    with psycopg.connect(fresh_db) as conn:
        left = conn.execute("SELECT count(*) FROM dns_records").fetchone()
    assert left == (0,)


async def test_smtp_down_then_up_retries_the_email_and_completes(
    temporal_client: Client, fresh_db: str
) -> None:
    mailbox = Mailbox()
    port = free_port()
    settings = make_settings(fresh_db, port)
    request = initiate(fresh_db)
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    async with build_worker(temporal_client, settings):
        handle = await start(temporal_client, settings, request)
        # Wait until the email step has failed at least once against the closed port.
        for _ in range(600):
            sends = (await attempts_in_flight(handle)).get("bootstrap.send_invitation_email", 0)
            if sends >= 2:
                break
            await asyncio.sleep(0.1)
        await asyncio.to_thread(controller.start)
        try:
            result = await asyncio.wait_for(handle.result(), RESULT_TIMEOUT)
        finally:
            await asyncio.to_thread(controller.stop)

    assert result.status == "completed", result
    assert (await attempts(handle))["bootstrap.send_invitation_email"][0] >= 2
    assert len(mailbox.messages) == 2
    assert [t for t, _ in stored_events(fresh_db, request.org_id)] == HAPPY_CHAIN


async def test_invalid_subdomain_fails_once_without_retries(
    temporal_client: Client, fresh_db: str
) -> None:
    request = initiate(fresh_db, subdomain="Not_A_Label")
    settings = make_settings(fresh_db, free_port())
    result, handle = await run_bootstrap(temporal_client, settings, request)

    assert result.status == "failed" and result.stage == "validation"
    assert result.reason is not None and "subdomain" in result.reason
    assert "not a valid DNS label" in result.reason
    seen = await attempts(handle)
    assert seen["bootstrap.begin"] == [1]
    assert "bootstrap.create_organization" not in seen
    events = stored_events(fresh_db, request.org_id)
    assert [t for t, _ in events] == [ev.BOOTSTRAP_INITIATED, ev.BOOTSTRAP_FAILED, ev.QUEUE_FAILED]
    assert events[1][1]["stage"] == "validation"
    assert "not a valid DNS label" in str(events[1][1]["reason"])


async def test_malformed_email_fails_once_without_retries(
    temporal_client: Client, fresh_db: str
) -> None:
    request = initiate(fresh_db, admins=[Admin("alice-at-example.org", "admin")])
    settings = make_settings(fresh_db, free_port())
    result, handle = await run_bootstrap(temporal_client, settings, request)

    assert result.status == "failed" and result.stage == "validation"
    assert "admins[0].email" in (result.reason or "")
    assert (await attempts(handle))["bootstrap.begin"] == [1]


async def test_run_worker_serves_until_stopped(
    temporal_client: Client, fresh_db: str, dev_layout: DevLayout, tmp_path: Path
) -> None:
    settings = make_settings(
        fresh_db,
        free_port(),
        temporal_address=dev_layout.temporal_address,
        email_provider="local",
        email_outbox_dir=tmp_path / "outbox",
    )
    request = initiate(fresh_db)
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, stop=stop))
    try:
        handle = await start(temporal_client, settings, request)
        result = await asyncio.wait_for(handle.result(), RESULT_TIMEOUT)
    finally:
        stop.set()
        await asyncio.wait_for(worker, 60)

    assert result.status == "completed"
    outbox = sorted(p.name for p in (tmp_path / "outbox").iterdir())
    assert outbox == sorted(
        f"invitation-{i.invitation_id}_{result.fqdn}.eml" for i in result.invitations
    )
    for invitation in result.invitations:
        text = (
            tmp_path / "outbox" / f"invitation-{invitation.invitation_id}_{result.fqdn}.eml"
        ).read_text()
        assert token_hash(eml_token(text)) == invitation.token_hash


async def test_sigterm_lets_the_running_activity_finish(
    temporal_client: Client, fresh_db: str, dev_layout: DevLayout
) -> None:
    mailbox = SlowMailbox(delay=2.0)
    port = free_port()
    settings = make_settings(fresh_db, port, temporal_address=dev_layout.temporal_address)
    request = initiate(fresh_db, admins=[Admin("alice@example.org", "admin")])
    with smtp_server(mailbox, port):
        worker = asyncio.create_task(run_worker(settings))
        handle = await start(temporal_client, settings, request)
        try:
            assert await asyncio.to_thread(mailbox.receiving.wait, RESULT_TIMEOUT)
            os.kill(os.getpid(), signal.SIGTERM)  # run_worker's handler turns it into a stop
            await asyncio.wait_for(worker, 60)
        finally:
            worker.cancel()
    try:
        # The email in flight when the signal came was delivered and recorded.
        assert len(mailbox.messages) == 1
        types = [t for t, _ in stored_events(fresh_db, request.org_id)]
        assert types[-1] == ev.INVITATION_EMAIL_SENT
        assert ev.BOOTSTRAP_COMPLETED not in types  # no worker left to finish the workflow
    finally:
        await handle.terminate(reason="test over")
