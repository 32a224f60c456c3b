"""The agents on the real services, records that are not what they seem: poison records go
to the dead-letter topic while their partition flows on, and the agents route by the
reader's ``event_type`` header, or else by the value (the harness: agents_app.py)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from temporalio.client import Client

from pipeline import events as ev
from pipeline.dev.layout import DevLayout
from tests.integration import agents_app
from tests.integration.agents_app import (
    Setup,
    all_consumed,
    app_env,
    emit_initiated,
    eventually,
    executions,
    queue_row,
    read_dead_letters,
    running_app,
    services,
    stream_events,
)

pytestmark = pytest.mark.integration

# The harness's fixture, under the name the tests ask for.
setup = agents_app.setup


async def test_poison_records_go_to_the_dead_letter_topic_and_the_partition_flows(
    setup: Setup,
    temporal_client: Client,
    kafka_bootstrap: str,
    tmp_path: Path,
    dev_layout: DevLayout,
) -> None:
    settings = setup.settings
    address = dev_layout.temporal_address
    org = uuid.uuid4()
    key = str(org).encode()  # same key as the good events: same partition, before them
    async with services(setup, temporal_client, kafka_bootstrap) as feeder:
        with running_app(
            app_env(settings, address, settings.consumer_group, tmp_path), tmp_path
        ) as app:
            not_json = feeder.next_headers()
            await feeder.send(key, b"{not json", not_json)
            breaks_contract = feeder.next_headers()
            bad_row = (
                b'{"id":"%s","stream_id":"%s","stream_type":"organization","stream_version":1,'
                b'"event_type":"organization.bootstrap.initiated","event_data":{"name":"x",'
                b'"subdomain":"x","admins":[]},"event_metadata":{"source":"api"},'
                b'"idempotency_key":null,"created_at":"2026-01-01T00:00:00+00:00"}'
            ) % (str(uuid.uuid4()).encode(), key)
            await feeder.send(key, bad_row, breaks_contract)
            job_id = emit_initiated(
                settings.database_url.get_secret_value(), org, f"ok-{org.hex[:8]}"
            )

            async def started() -> bool:
                row = queue_row(settings.database_url.get_secret_value(), job_id)
                return row is not None and row[3] is not None

            await eventually(started, "the good stream's workflow start", app)
            assert app.metric("pipeline_events_dead_lettered_total", reason="bad_value") == 1
            assert app.metric("pipeline_events_dead_lettered_total", reason="contract") == 1

    consumer = AIOKafkaConsumer(
        settings.dead_letter_topic,
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    try:
        got = []
        for _ in range(50):
            for records in (await consumer.getmany(timeout_ms=200)).values():
                got.extend(records)
            if len(got) >= 2:
                break
    finally:
        await consumer.stop()
    assert len(got) == 2
    by_kind = {dict(r.headers)["reason_kind"]: r for r in got}
    assert set(by_kind) == {b"bad_value", b"contract"}
    assert by_kind[b"bad_value"].value == b"{not json"
    contract_headers = dict(by_kind[b"contract"].headers)
    assert contract_headers["commit_lsn"] == dict(breaks_contract)["commit_lsn"]
    assert contract_headers["idx"] == b"0"
    assert contract_headers["original_topic"] == settings.topic.encode()
    assert b"admins" in contract_headers["reason"]
    # Both were the first records of the good stream's partition (same key), which then
    # flowed on to the workflow start above.
    assert sorted(int(dict(r.headers)["original_offset"]) for r in got) == [0, 1]
    assert len({dict(r.headers)["original_partition"] for r in got}) == 1


@pytest.mark.parametrize("event_type_header", [True, False], ids=["header", "no-header"])
async def test_agents_route_by_the_event_type_header_or_else_by_the_value(
    setup: Setup,
    temporal_client: Client,
    kafka_bootstrap: str,
    tmp_path: Path,
    dev_layout: DevLayout,
    event_type_header: bool,
) -> None:
    """Records as the reader writes them, with the ``event_type`` header (header) and as
    an older reader did, without it (no-header): the chain runs either way. Beside them,
    records written by hand with a plain producer: an initiated event whose header says
    another type (a lying header), and a value that is not JSON behind an initiated
    header. Both are dead-lettered once; nothing acts on the lying one (no pending job
    for its organization), which also shows the headers reach the agents through Faust."""
    settings = setup.settings
    dsn = settings.database_url.get_secret_value()
    org, liar = uuid.uuid4(), uuid.uuid4()
    async with services(
        setup, temporal_client, kafka_bootstrap, event_type_header=event_type_header
    ) as feeder:
        env = app_env(settings, dev_layout.temporal_address, settings.consumer_group, tmp_path)
        with running_app(env, tmp_path) as app:
            lying = (
                b'{"id":"%s","stream_id":"%s","stream_type":"organization","stream_version":1,'
                b'"event_type":"organization.bootstrap.initiated","event_data":{"name":"Liar",'
                b'"subdomain":"liar","admins":[{"email":"ada@example.com",'
                b'"role":"organization_admin"}]},"event_metadata":{"source":"api"},'
                b'"idempotency_key":null,"created_at":"2026-01-01T00:00:00+00:00"}'
            ) % (str(uuid.uuid4()).encode(), str(liar).encode())
            await feeder.send(
                str(liar).encode(),
                lying,
                [*feeder.next_headers(), ("event_type", b"invitation.email.sent")],
            )
            await feeder.send(
                str(liar).encode(),
                b"{not json",
                [*feeder.next_headers(), ("event_type", ev.BOOTSTRAP_INITIATED.encode())],
            )
            job_id = emit_initiated(dsn, org, f"hdr-{org.hex[:8]}")

            async def chain_done() -> bool:
                row = queue_row(dsn, job_id)
                return (
                    row is not None
                    and row[3] is not None
                    and len(feeder.produced) == 4
                    and await all_consumed(app, 6)
                )

            await eventually(chain_done, "initiated → … → workflow_started", app)
            assert all(
                any(name == "event_type" for name, _ in headers) == event_type_header
                for _, _, headers in feeder.produced
            )
            assert [e[0] for e in stream_events(dsn, org)] == [
                ev.BOOTSTRAP_INITIATED,
                ev.QUEUE_PENDING,
                ev.QUEUE_CLAIMED,
                ev.BOOTSTRAP_WORKFLOW_STARTED,
            ]
            assert app.metric("pipeline_workflow_starts_total", outcome="started") == 1
            assert app.metric("pipeline_events_dead_lettered_total", reason="bad_headers") == 1
            assert app.metric("pipeline_events_dead_lettered_total", reason="bad_value") == 1
            assert stream_events(dsn, liar) == []  # the enqueue agent never acted on it

    got = await read_dead_letters(kafka_bootstrap, settings.dead_letter_topic, 2)
    assert len(got) == 2
    by_kind = {dict(r.headers)["reason_kind"]: r for r in got}
    assert set(by_kind) == {b"bad_headers", b"bad_value"}
    assert by_kind[b"bad_headers"].value == lying
    assert b"invitation.email.sent" in dict(by_kind[b"bad_headers"].headers)["reason"]
    assert by_kind[b"bad_value"].value == b"{not json"
    assert await executions(temporal_client, ev.workflow_id_for(str(liar))) == []
