"""`pipeline trace` on chains written with plain SQL (api.emit_domain_event): a complete
one (exit 0, +ms per event, --json) and an incomplete one (exit 1 naming the missing
event), by organization id and by workflow id."""

from __future__ import annotations

import subprocess
import uuid

import orjson
import psycopg
import pytest
from psycopg.types.json import Jsonb

from pipeline import events as ev
from pipeline import trace
from tests.integration.pipeline_process import pipeline_cli

pytestmark = pytest.mark.integration

ADMINS = [
    {"email": "a@trace.test", "role": "organization_admin"},
    {"email": "b@trace.test", "role": "organization_admin"},
]


def write_chain(dsn: str, org: uuid.UUID, event_types: list[str]) -> None:
    cause = str(uuid.uuid4())  # the pipeline's events must name one (the store checks)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for n, event_type in enumerate(event_types):
            data: dict[str, object] = {"n": n}
            if event_type == ev.BOOTSTRAP_INITIATED:
                data = {"name": "Trace", "subdomain": f"t-{org.hex[:8]}", "admins": ADMINS}
            conn.execute(
                "SELECT api.emit_domain_event(p_stream_id => %s, p_stream_type => 'organization', "
                "p_event_type => %s, p_event_data => %s, p_event_metadata => %s)",
                (org, event_type, Jsonb(data), Jsonb({"source": "test", "causation_id": cause})),
            )


def complete_chain() -> list[str]:
    chain: list[str] = []
    for event_type in trace.SUCCESS_CHAIN:
        chain += [event_type] * (len(ADMINS) if event_type in trace.PER_ADMIN else 1)
    return chain


def run_trace(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [pipeline_cli(), "trace", *args],
        check=False,
        env={"PATH": "/usr/bin:/bin", "PIPELINE_DATABASE_URL": dsn},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_trace_of_a_complete_chain_prints_every_event_with_its_ms(fresh_db: str) -> None:
    org = uuid.uuid4()
    chain = complete_chain()
    write_chain(fresh_db, org, chain)

    text = run_trace(fresh_db, str(org))
    assert text.returncode == 0, text.stderr
    rows = [line.split() for line in text.stdout.splitlines() if line[:3].strip().isdigit()]
    assert [r[1] for r in rows] == chain
    assert float(rows[0][2]) == 0.0
    assert all(float(r[2]) >= 0 for r in rows)
    assert f"complete: {len(chain)} events" in text.stdout

    by_workflow = run_trace(fresh_db, ev.workflow_id_for(str(org)), "--json")
    assert by_workflow.returncode == 0, by_workflow.stderr
    report = orjson.loads(by_workflow.stdout)
    assert report["state"] == "completed" and report["missing"] is None
    assert report["workflow_id"] == ev.workflow_id_for(str(org))
    assert [e["event_type"] for e in report["events"]] == chain
    assert [e["ms"] for e in report["events"]] == sorted(e["ms"] for e in report["events"])


def test_trace_of_an_incomplete_chain_exits_1_naming_the_missing_event(fresh_db: str) -> None:
    org = uuid.uuid4()
    chain = complete_chain()
    # The second admin's email was never sent, and the workflow never finished.
    cut = chain.index(ev.INVITATION_EMAIL_SENT) + 1
    write_chain(fresh_db, org, chain[:cut])

    text = run_trace(fresh_db, str(org))
    assert text.returncode == 1
    assert "incomplete chain: invitation.email.sent (1 of 2) is missing" in text.stderr
    assert "Traceback" not in text.stderr
    assert ev.INVITATION_EMAIL_SENT in text.stdout  # what exists is still shown

    as_json = run_trace(fresh_db, str(org), "--json")
    assert as_json.returncode == 1
    report = orjson.loads(as_json.stdout)
    assert report["state"] == "incomplete"
    assert report["missing"] == "invitation.email.sent (1 of 2)"

    # A chain stopped earlier names its first missing step.
    other = uuid.uuid4()
    write_chain(fresh_db, other, [ev.BOOTSTRAP_INITIATED, ev.QUEUE_PENDING])
    early = run_trace(fresh_db, str(other))
    assert early.returncode == 1
    assert "incomplete chain: workflow.queue.claimed is missing" in early.stderr


def test_trace_refuses_what_is_no_id_and_names_an_unknown_organization(fresh_db: str) -> None:
    bad = run_trace(fresh_db, "acme")
    assert bad.returncode == 2
    assert "neither an organization id" in bad.stderr
    unknown = run_trace(fresh_db, str(uuid.uuid4()))
    assert unknown.returncode == 1
    assert "no event for organization" in unknown.stderr
