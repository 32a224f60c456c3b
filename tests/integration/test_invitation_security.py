"""Issue 16's acceptance: no invitation token in the log; the emailed link works once.

A completed bootstrap through the real pipeline (`pipeline run` as a process, the real
bootstrap worker, PostgreSQL, Kafka, Temporal). The tokens are taken from the emails the
local provider wrote; then every `domain_events` row, every Kafka record of the topic
(a plain aiokafka consumer, raw bytes) and every event of the workflow's Temporal
history (the client's `fetch_history`) are searched for them. The links are then used
with plain HTTP requests against the accept page of `pipeline run`.
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer
from temporalio.client import Client

from pipeline import events
from pipeline.bootstrap.settings import from_env
from pipeline.bootstrap.worker import build_worker
from pipeline.invitations.tokens import token_hash
from tests.integration.pipeline_process import (
    RunningPipeline,
    eml_token,
    eventually,
    pipeline_env,
    slot_active,
    start_pipeline,
    stop_pipeline,
)
from tests.integration.test_end_to_end import emit_bootstrap, wait_completed

pytestmark = pytest.mark.integration

# Long enough for the bootstrap and the first acceptance on a busy machine, short enough
# to wait for the second invitation to expire.
TTL = timedelta(seconds=45)


@asynccontextmanager
async def pipeline_with_short_invitations(
    dsn: str, kafka: str, client: Client, tmp: Path
) -> AsyncIterator[RunningPipeline]:
    env = pipeline_env(dsn, kafka, client.service_client.config.target_host, tmp)
    env["PIPELINE_INVITATION_ACCEPT_URL"] = (
        f"http://127.0.0.1:{env['PIPELINE_WEB_PORT']}/invitations/accept"
    )
    worker = build_worker(client, from_env(env).model_copy(update={"invitation_ttl": TTL}))
    running = start_pipeline(env, tmp)
    try:
        async with worker:
            yield running
    finally:
        stop_pipeline(running)


def http(url: str, form: dict[str, str] | None = None) -> tuple[int, str]:
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=30) as r:
            return int(r.status), r.read().decode()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read().decode()


async def raw_topic(bootstrap: str, topic: str, expected: int) -> list[bytes]:
    """Key, headers and value of every record of ``topic``, as bytes."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"scan-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: list[bytes] = []
    try:
        async with asyncio.timeout(120):
            while len(found) < expected:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    for m in records:
                        headers = b"".join(k.encode() + bytes(v) for k, v in m.headers)
                        found.append((m.key or b"") + headers + (m.value or b""))
        extra = await consumer.getmany(timeout_ms=1000)
        for records in extra.values():
            found.extend((m.key or b"") + (m.value or b"") for m in records)
    finally:
        await consumer.stop()
    return found


def store_text(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT row_to_json(e)::text FROM domain_events e").fetchall()
    return [str(r[0]) for r in rows]


def accepted_events(dsn: str, invitation_id: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM domain_events WHERE event_type = %s "
            "AND event_data->>'invitation_id' = %s",
            (events.INVITATION_ACCEPTED, invitation_id),
        ).fetchone()
    return int(row[0]) if row else 0


async def test_no_token_in_the_log_and_the_link_is_accepted_once_then_refused(
    fresh_db: str, kafka_bootstrap: str, temporal_client: Client, tmp_path: Path
) -> None:
    async with pipeline_with_short_invitations(
        fresh_db, kafka_bootstrap, temporal_client, tmp_path
    ) as running:
        settings = running.settings
        await eventually(lambda: slot_active(fresh_db, settings.slot_name), "the reader", running)
        org = uuid.uuid4()
        emit_bootstrap(fresh_db, org, "stream")
        await wait_completed(fresh_db, org, running)

        outbox = Path(running.env["PIPELINE_EMAIL_OUTBOX_DIR"])
        tokens = [eml_token(p.read_text()) for p in sorted(outbox.glob("*.eml"))]
        assert len(tokens) == 2

        # No token anywhere in the log; their hashes are there (the search does find text).
        rows = store_text(fresh_db)
        for token in tokens:
            assert all(token not in row for row in rows)
            assert any(token_hash(token) in row for row in rows)
            assert token.partition(".")[2] not in "".join(rows)
        records = await raw_topic(kafka_bootstrap, settings.topic, len(rows))
        assert len(records) >= len(rows)
        for token in tokens:
            assert all(token.encode() not in r for r in records)
            assert all(token.partition(".")[2].encode() not in r for r in records)
        handle = temporal_client.get_workflow_handle(events.workflow_id_for(str(org)))
        # Payloads are raw bytes in the serialized events (base64 only in the JSON form).
        history = [e.SerializeToString() for e in (await handle.fetch_history()).events]
        assert len(history) > 10
        for token in tokens:
            assert all(token.encode() not in e for e in history)
            assert all(token.partition(".")[2].encode() not in e for e in history)
            assert any(token_hash(token).encode() in e for e in history)
        assert all(token not in running.log.read_text(errors="replace") for token in tokens)

        base = f"http://127.0.0.1:{settings.web_port}/invitations/accept"
        first, second = tokens
        first_id = first.partition(".")[0]
        status, page = await asyncio.to_thread(http, f"{base}?token={first}")
        assert status == 200 and 'method="post"' in page, page
        before = len(store_text(fresh_db))

        # Refusals write nothing: a tampered token, an unknown one, no token.
        tampered = first[:-2] + ("AA" if not first.endswith("AA") else "BB")
        for bad in (tampered, f"{uuid.uuid4()}.{'A' * 43}", ""):
            status, page = await asyncio.to_thread(http, base, {"token": bad})
            assert status == 404 and "Invitation not found" in page, page
        assert len(store_text(fresh_db)) == before

        # Accepted once...
        status, page = await asyncio.to_thread(http, base, {"token": first})
        assert status == 200 and "Invitation accepted" in page, page
        assert accepted_events(fresh_db, first_id) == 1
        # ...refused the second time, before and after the projection saw the acceptance.
        status, page = await asyncio.to_thread(http, base, {"token": first})
        assert status == 409 and "already" in page, page

        def projected_accepted() -> bool:
            with psycopg.connect(fresh_db) as conn:
                row = conn.execute(
                    "SELECT status FROM invitations_projection WHERE id = %s", (first_id,)
                ).fetchone()
            return row == ("accepted",)

        await eventually(projected_accepted, "the accepted invitation's projection", running)
        status, page = await asyncio.to_thread(http, base, {"token": first})
        assert status == 409 and "already" in page, page
        status, _ = await asyncio.to_thread(http, f"{base}?token={first}")
        assert status == 409
        assert accepted_events(fresh_db, first_id) == 1

        # The other invitation, after its expiry: refused, nothing written.
        second_id = second.partition(".")[0]
        with psycopg.connect(fresh_db) as conn:
            row = conn.execute(
                "SELECT expires_at FROM invitations_projection WHERE id = %s", (second_id,)
            ).fetchone()
        assert row is not None
        wait = (row[0] - datetime.now(UTC)).total_seconds() + 0.5
        assert wait > 0, "the bootstrap took longer than the test's invitation lifetime"
        await asyncio.sleep(wait)
        before = len(store_text(fresh_db))
        status, page = await asyncio.to_thread(http, base, {"token": second})
        assert status == 410 and "expired" in page, page
        assert len(store_text(fresh_db)) == before
        assert accepted_events(fresh_db, second_id) == 0

        # Every other write action on the web port needs the configured credential.
        status, page = await asyncio.to_thread(
            http, f"http://127.0.0.1:{settings.web_port}/metrics", {"x": "1"}
        )
        assert status == 401 and "write actions are disabled" in page
