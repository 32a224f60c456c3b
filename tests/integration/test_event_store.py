"""The event store: both emit_domain_event signatures, idempotency, append-only."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg.types.json import Jsonb

pytestmark = pytest.mark.integration

STREAM_SQL = (
    "SELECT api.emit_domain_event(p_stream_id => %s, p_stream_type => 'organization', "
    "p_event_type => %s, p_event_data => %s, p_event_metadata => %s, p_idempotency_key => %s)"
)
AGGREGATE_SQL = (
    "SELECT api.emit_domain_event(p_event_id => %s, p_event_type => %s, "
    "p_aggregate_type => 'organization', p_aggregate_id => %s, p_event_data => %s, "
    "p_event_metadata => %s)"
)


def _one(
    conn: psycopg.Connection[tuple[object, ...]], sql: str, params: tuple[object, ...]
) -> object:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


def test_stream_signature_returns_id_and_versions_the_stream(fresh_db: str) -> None:
    org = uuid.uuid4()
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        first = _one(conn, STREAM_SQL, (org, "a.happened", Jsonb({"n": 1}), Jsonb({}), None))
        second = _one(conn, STREAM_SQL, (org, "b.happened", Jsonb({"n": 2}), Jsonb({}), None))
        rows = conn.execute(
            "SELECT id, stream_version, event_type, event_data FROM domain_events "
            "WHERE stream_id = %s ORDER BY stream_version",
            (org,),
        ).fetchall()
    assert [r[0] for r in rows] == [first, second]
    assert [r[1] for r in rows] == [1, 2]
    assert rows[1][3] == {"n": 2}


def test_aggregate_signature_uses_the_given_event_id(fresh_db: str) -> None:
    org, event_id = uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        got = _one(
            conn, AGGREGATE_SQL, (event_id, "organization.created", org, Jsonb({}), Jsonb({}))
        )
        again = _one(
            conn, AGGREGATE_SQL, (event_id, "organization.created", org, Jsonb({}), Jsonb({}))
        )
        count = _one(conn, "SELECT count(*) FROM domain_events WHERE stream_id = %s", (org,))
    assert got == event_id == again
    assert count == 1


@pytest.mark.parametrize("in_metadata", [False, True])
def test_repeated_idempotency_key_returns_first_id_and_adds_nothing(
    fresh_db: str, in_metadata: bool
) -> None:
    org = uuid.uuid4()
    key = f"test:{uuid.uuid4()}"
    meta = Jsonb({"idempotency_key": key} if in_metadata else {})
    param = None if in_metadata else key
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        first = _one(conn, STREAM_SQL, (org, "x.happened", Jsonb({}), meta, param))
        second = _one(conn, STREAM_SQL, (org, "x.happened", Jsonb({"other": 1}), meta, param))
        count = _one(conn, "SELECT count(*) FROM domain_events", ())
    assert first == second
    assert count == 1


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE domain_events SET event_type = 'changed'",
        "DELETE FROM domain_events",
        "TRUNCATE domain_events",
    ],
)
def test_domain_events_is_append_only(fresh_db: str, statement: str) -> None:
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        _one(conn, STREAM_SQL, (uuid.uuid4(), "x.happened", Jsonb({}), Jsonb({}), None))
        with pytest.raises(psycopg.errors.RestrictViolation, match="append-only"):
            conn.execute(statement)
        assert (
            _one(conn, "SELECT count(*) FROM domain_events WHERE event_type = 'x.happened'", ())
            == 1
        )


def test_lsn_columns_are_pg_lsn(fresh_db: str) -> None:
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE udt_name = 'pg_lsn' ORDER BY 1, 2"
        ).fetchall()
    tables = {t for t, _ in rows}
    assert {
        "pipeline_checkpoints",
        "workflow_queue_projection",
        "organizations_projection",
        "invitations_projection",
    } <= tables
