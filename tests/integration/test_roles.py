"""sql/roles.sql: idempotent, and each role can do its component's work and nothing more.

Plain SQL as each role (the dev cluster trusts local logins); the refusals are
PostgreSQL's own (insufficient_privilege).
"""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.integration.pipeline_process import ROLES_SQL, as_role

pytestmark = pytest.mark.integration

EMIT = (
    "SELECT api.emit_domain_event(p_stream_id => %s, p_stream_type => 'organization', "
    "p_event_type => 'organization.created', p_event_data => %s, p_idempotency_key => %s)"
)
APPEND = (
    "SELECT api.append_domain_event(NULL, %s, 'organization', 'organization.created', "
    "'{}'::jsonb, '{}'::jsonb, NULL)"
)
INSERT = (
    "INSERT INTO domain_events (stream_id, stream_type, stream_version, event_type) "
    "VALUES (%s, 'organization', 1, 'organization.created')"
)


def refused(dsn: str, sql: str, params: tuple[object, ...] = ()) -> bool:
    with psycopg.connect(dsn, autocommit=True) as conn:
        try:
            conn.execute(sql, params)
        except psycopg.errors.InsufficientPrivilege:
            return True
    return False


def emit(dsn: str) -> uuid.UUID:
    key = f"test:{uuid.uuid4()}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            EMIT, (uuid.uuid4(), Jsonb({"name": "A", "subdomain": "a"}), key)
        ).fetchone()
        again = conn.execute(
            EMIT, (uuid.uuid4(), Jsonb({"name": "A", "subdomain": "a"}), key)
        ).fetchone()
    assert row is not None and isinstance(row[0], uuid.UUID)
    assert again == row  # the idempotency key still works through SECURITY DEFINER
    return row[0]


@pytest.fixture
def roles_db(fresh_db: str) -> str:
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        for _ in range(2):  # idempotent
            conn.execute(ROLES_SQL.read_text().encode())
    return fresh_db


def test_reader_reads_and_replicates_but_never_writes_events(roles_db: str) -> None:
    reader = as_role(roles_db, "pipeline_reader")
    with psycopg.connect(reader) as conn:
        row = conn.execute(
            "SELECT rolreplication, rolsuper FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        assert row == (True, False)
        conn.execute("SELECT count(*) FROM domain_events").fetchone()
        conn.execute("SELECT count(*) FROM pipeline_reader_snapshots").fetchone()
    org = uuid.uuid4()
    assert refused(reader, INSERT, (org,))
    assert refused(reader, EMIT, (org, Jsonb({}), "k"))
    assert refused(reader, APPEND, (org,))
    assert refused(reader, "SELECT * FROM invitations_projection")
    assert refused(reader, "CREATE TABLE sneaky (x int)")


def test_agents_emit_and_project_but_never_insert_events_directly(roles_db: str) -> None:
    agents = as_role(roles_db, "pipeline_agents")
    event_id = emit(agents)
    with psycopg.connect(roles_db) as conn:
        owner = conn.execute(
            "SELECT event_type FROM domain_events WHERE id = %s", (event_id,)
        ).fetchone()
    assert owner == ("organization.created",)
    with psycopg.connect(agents) as conn:
        conn.execute("SELECT count(*) FROM invitations_projection").fetchone()
        conn.execute("SELECT count(*) FROM pipeline_checkpoints").fetchone()
    org = uuid.uuid4()
    assert refused(agents, INSERT, (org,))
    assert refused(agents, APPEND, (org,))
    assert refused(agents, "DELETE FROM workflow_queue_projection")
    assert refused(agents, "SELECT * FROM dns_records")
    assert refused(agents, "INSERT INTO pipeline_reader_snapshots VALUES ('s', '0/0', 0)")


def test_worker_emits_and_publishes_local_dns_only(roles_db: str) -> None:
    worker = as_role(roles_db, "pipeline_worker")
    emit(worker)
    with psycopg.connect(worker, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO dns_records (fqdn, record_type, content) VALUES ('a.test', 'CNAME', 'x')"
        )
        conn.execute("DELETE FROM dns_records WHERE fqdn = 'a.test'")
    org = uuid.uuid4()
    assert refused(worker, INSERT, (org,))
    assert refused(worker, "SELECT * FROM invitations_projection")
    assert refused(worker, "UPDATE workflow_queue_projection SET attempts = 0")
