"""The console's pages against a real PostgreSQL (and Kafka for /pipeline), served by the
console's own aiohttp application: a failed bootstrap shows why, a dead letter shows its
record, the form writes once however often it is sent, an invalid one writes nothing,
and the bootstrap stream speaks server-sent events."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from psycopg.types.json import Jsonb

from pipeline import events as ev
from pipeline import webauth
from pipeline.config import load_settings
from pipeline.console import app as console_app
from pipeline.console.guard import Guard

pytestmark = pytest.mark.integration

TOKEN = "pages-test-token-" + "5" * 32
BEARER = {"Authorization": f"Bearer {TOKEN}"}
Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def client(fresh_db: str, kafka_bootstrap: str) -> AsyncIterator[Client]:
    settings = load_settings(
        {
            "PIPELINE_DATABASE_URL": fresh_db,
            "PIPELINE_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "PIPELINE_TEMPORAL_ADDRESS": "127.0.0.1:7233",
            "PIPELINE_TOPIC": f"console-{uuid.uuid4().hex[:8]}",
        }
    )
    console = console_app.Console(
        settings, Guard(webauth.WebAuth(token=TOKEN)), None, console_app.templates()
    )
    async with TestClient(TestServer(console_app.build(console))) as test_client:
        yield test_client


def count_events(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM domain_events").fetchone()
    assert row is not None
    return int(row[0])


async def form_fields(client: Client) -> dict[str, str]:
    page = await (await client.get("/organizations/new", headers=BEARER)).text()
    return dict(re.findall(r'name="(csrf|org_id)" value="([^"]+)"', page))


async def test_the_form_writes_once_however_often_it_is_sent_and_never_when_invalid(
    client: Client, fresh_db: str
) -> None:
    fields = await form_fields(client)
    invalid = {**fields, "name": "Acme", "subdomain": "-bad-", "admin_email": "a@acme.test"}
    refused = await client.post("/organizations", data=invalid, headers=BEARER)
    assert refused.status == 422
    assert 'id="subdomain-error"' in await refused.text()
    assert count_events(fresh_db) == 0

    valid = {**invalid, "subdomain": f"acme-{uuid.uuid4().hex[:6]}"}
    for _ in range(2):  # a double click, a resent form
        sent = await client.post(
            "/organizations", data=valid, headers=BEARER, allow_redirects=False
        )
        assert sent.status == 303
        assert sent.headers["Location"] == f"/organizations/{fields['org_id']}"
    assert count_events(fresh_db) == 1

    unauthenticated = await client.post("/organizations", data=valid)
    assert unauthenticated.status == 401


async def test_a_failed_bootstrap_shows_why_and_its_stream_is_server_sent_events(
    client: Client, fresh_db: str
) -> None:
    org = uuid.uuid4()
    chain = [
        (ev.BOOTSTRAP_INITIATED, {"name": "Doomed", "subdomain": "doomed", "admins": []}),
        (ev.QUEUE_PENDING, {}),
        (ev.QUEUE_CLAIMED, {}),
        (ev.BOOTSTRAP_FAILED, {"stage": "dns", "reason": "the provider refused the record"}),
        (ev.QUEUE_FAILED, {"error": "dns"}),
    ]
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        for event_type, data in chain:
            conn.execute(
                "SELECT api.emit_domain_event(p_stream_id => %s, p_stream_type => 'organization', "
                "p_event_type => %s, p_event_data => %s, p_event_metadata => %s)",
                (org, event_type, Jsonb(data), Jsonb({"source": "test", "causation_id": str(org)})),
            )
    page = await (await client.get(f"/organizations/{org}")).text()
    assert "Bootstrap of Doomed" in page
    assert "failed: failed at dns: the provider refused the record" in page
    assert ev.workflow_id_for(str(org)) in page

    stream = await client.get(f"/organizations/{org}/events")
    assert stream.headers["Content-Type"].startswith("text/event-stream")
    first = (await stream.content.readuntil(b"\n\n")).decode()
    assert first.startswith("event: update\ndata: ")
    assert "the provider refused the record" in first
    stream.close()

    assert (await client.get("/organizations/not-a-uuid")).status == 404


async def test_a_dead_letter_is_listed_on_pipeline_and_shows_its_record(
    client: Client, fresh_db: str
) -> None:
    key = "0/16B3748/0/contract"
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO pipeline_dead_letters (dead_letter_key, commit_lsn, idx, reason_kind, "
            "reason, source, record_value, published) "
            "VALUES (%s, '0/16B3748', 0, 'contract', 'event_data.subdomain: must match', "
            "'projection', %s, true)",
            (key, b'{"event_type": "organization.bootstrap.initiated", "x": "<script>"}'),
        )
    overview = await (await client.get("/pipeline")).text()
    assert "open 1" in overview
    links = re.findall(r'href="(/dead-letters/[^"]+)"', overview)
    assert len(links) == 1, overview

    record = await client.get(links[0])
    assert record.status == 200, await record.text()
    text = await record.text()
    assert "event_data.subdomain: must match" in text
    assert "&lt;script&gt;" in text and "<script>" not in text  # escaped, never run
    assert record.headers["X-Frame-Options"] == "DENY"


async def test_sign_in_refuses_a_wrong_token_and_redirects_only_within_the_console(
    client: Client,
) -> None:
    page = await (await client.get("/login")).text()
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match is not None
    csrf = match[1]
    wrong = await client.post("/login", data={"csrf": csrf, "token": "nope", "next": "/"})
    assert wrong.status == 401
    assert "wrong token" in await wrong.text()
    right = await client.post(
        "/login",
        data={"csrf": csrf, "token": TOKEN, "next": "//evil.example/"},
        allow_redirects=False,
    )
    assert right.status == 303
    assert right.headers["Location"] == "/organizations/new"  # never another site
    assert TOKEN not in right.headers.get("Set-Cookie", "")
    signed_in = await client.get("/organizations/new", allow_redirects=False)
    assert signed_in.status == 200  # the session cookie, no bearer header
