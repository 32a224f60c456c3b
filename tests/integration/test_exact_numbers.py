"""Jobs enqueued by hand, with plain SQL, through `pipeline run`: every digit kept, and an
input the workflow cannot take fails the job instead of leaving it pending forever.

jsonb stores any JSON number exactly (it is ``numeric``) and prints it without an
exponent: an integer past 64 bits, a fraction with more digits than a double keeps,
``1e-400`` as 400 zeros and a one, ``1e5000`` as 5,001 digits. orjson reads the first
three as rounded doubles without a word, and Python will not read an int of more than
4,300 digits. The pending event's ``input`` becomes the job's row in the queue
projection, so the row must hold the very jsonb the event holds: PostgreSQL compares
them here, number by number.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest
from temporalio.client import Client

from pipeline import events as ev
from pipeline.dev.layout import DevLayout
from tests.integration.pipeline_process import (
    eventually,
    pipeline_env,
    start_pipeline,
    stop_pipeline,
)

pytestmark = pytest.mark.integration

ADMINS = '"admins": [{"email": "ada@example.com", "role": "owner"}]'
# The literals as a client would type them into psql.
NUMBERS = {
    # orjson reads each of these without complaint, as a rounded double.
    "ints": '"serial": 1234567890123456789012345, "u64_max": 18446744073709551615,'
    ' "past_u64": 18446744073709551616, "below_i64": -9223372036854775809,'
    ' "fraction": 0.1000000000000000055511151231257827, "tiny": 1e-400, "price": 19.99',
    # 5,001 digits: orjson refuses them, and so would Python's int().
    "huge": '"huge": 1e5000, "big": 1.5e400, "list": [1e400, -1e-400, 2.5]',
}

EMIT = (
    "SELECT api.emit_domain_event(p_stream_id => %(org)s, p_stream_type => 'organization',"
    " p_event_type => 'workflow.queue.pending', p_event_data => jsonb_build_object("
    "  'job_id', %(job)s::text, 'workflow_type', 'OrganizationBootstrapWorkflow',"
    "  'workflow_id', 'org-bootstrap-' || %(org)s::text, 'source_event_id', %(job)s::text,"
    "  'input', %(input)s::jsonb),"
    " p_event_metadata => jsonb_build_object('causation_id', %(job)s::text, 'source', 'psql'),"
    " p_idempotency_key => %(job)s::text || ':workflow.queue.pending')"
)


def _enqueue(dsn: str, org: uuid.UUID, job: uuid.UUID, fields: str) -> None:
    body = f'"org_id": "{org}", "name": "Exact", "subdomain": "x-{org.hex[:8]}", {ADMINS}'
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(EMIT, {"org": org, "job": job, "input": "{" + body + fields + "}"})


def _row(dsn: str, job: uuid.UUID) -> tuple[str, str | None, str | None, bool] | None:
    """The job's queue row: status, run id, last error, and whether its event_data is the
    pending event's input (jsonb equality: numeric, digit for digit)."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT q.status, q.run_id, q.last_error, q.event_data = e.event_data->'input'"
            " FROM workflow_queue_projection q JOIN domain_events e"
            "  ON e.event_type = 'workflow.queue.pending' AND e.event_data->>'job_id' = %s"
            " WHERE q.job_id = %s",
            (str(job), job),
        ).fetchone()
    return None if row is None else (row[0], row[1], row[2], bool(row[3]))


def _types(dsn: str, org: uuid.UUID) -> list[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT event_type FROM domain_events WHERE stream_id = %s ORDER BY stream_version",
            (org,),
        ).fetchall()
    return [str(r[0]) for r in rows]


async def test_hand_enqueued_jobs_keep_every_digit_and_a_bad_input_fails_its_job(
    dev_layout: DevLayout, fresh_db: str, temporal_client: Client, tmp_path: Path
) -> None:
    env = pipeline_env(fresh_db, dev_layout.kafka_bootstrap, dev_layout.temporal_address, tmp_path)
    jobs = {name: (uuid.uuid4(), uuid.uuid4()) for name in (*NUMBERS, "no_org_id")}
    running = start_pipeline(env, tmp_path)
    try:
        for name, fields in NUMBERS.items():
            org, job = jobs[name]
            _enqueue(fresh_db, org, job, ", " + fields)
        # The workflow needs org_id: without it the job can never start.
        org, job = jobs["no_org_id"]
        body = f'"name": "No id", "subdomain": "x-{org.hex[:8]}", {ADMINS}'
        with psycopg.connect(fresh_db, autocommit=True) as conn:
            conn.execute(EMIT, {"org": org, "job": job, "input": "{" + body + "}"})

        def settled() -> bool:
            rows = [_row(fresh_db, job) for _, job in jobs.values()]
            return all(r is not None and (r[1] is not None or r[0] == "failed") for r in rows)

        await eventually(settled, "every job started or failed", running)
    finally:
        stop_pipeline(running)

    for name in NUMBERS:
        org, job = jobs[name]
        row = _row(fresh_db, job)
        assert row is not None and row[0] == "processing" and row[1], (name, row)
        assert row[3], f"{name}: the queue row's event_data is not the pending event's input"
        described = await temporal_client.get_workflow_handle(
            ev.workflow_id_for(str(org))
        ).describe()
        assert described.run_id == row[1]
        assert _types(fresh_db, org) == [
            ev.QUEUE_PENDING,
            ev.QUEUE_CLAIMED,
            ev.BOOTSTRAP_WORKFLOW_STARTED,
        ]

    org, job = jobs["no_org_id"]
    row = _row(fresh_db, job)
    assert row is not None and row[0] == "failed" and row[1] is None, row
    assert row[2] is not None and "org_id" in row[2], row
    assert _types(fresh_db, org) == [ev.QUEUE_PENDING, ev.QUEUE_FAILED]
    assert running.log.read_text().count("cannot start") == 1
