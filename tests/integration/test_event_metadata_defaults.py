"""Issue 15 item 10: api.emit_domain_event used as declared writes events the contract
accepts, or is refused at emit time naming the field (migration 0005)."""

from __future__ import annotations

import uuid
from datetime import datetime

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from pipeline.contract import default_contract

pytestmark = pytest.mark.integration

INITIATED = {
    "name": "Acme",
    "subdomain": "acme",
    "admins": [{"email": "a@acme.test", "role": "organization_admin"}],
}


def stored(dsn: str, event_id: uuid.UUID) -> dict[str, object]:
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        row = conn.execute(
            "SELECT id, stream_id, stream_type, stream_version, event_type, event_data, "
            "event_metadata, idempotency_key, created_at FROM domain_events WHERE id = %s",
            (event_id,),
        ).fetchone()
    assert row is not None
    # As the reader puts it on the topic: uuids and timestamps as text.
    return {
        k: str(v) if isinstance(v, uuid.UUID) else v.isoformat() if isinstance(v, datetime) else v
        for k, v in row.items()
    }


def test_stream_signature_with_the_default_metadata_writes_a_valid_event(fresh_db: str) -> None:
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        row = conn.execute(
            "SELECT api.emit_domain_event(p_stream_id => %s, p_stream_type => 'organization', "
            "p_event_type => 'organization.bootstrap.initiated', p_event_data => %s)",
            (uuid.uuid4(), Jsonb(INITIATED)),
        ).fetchone()
    assert row is not None
    event = stored(fresh_db, row[0])
    assert event["event_metadata"] == {"source": "api.emit_domain_event"}
    default_contract().validate_event(event)


def test_aggregate_signature_keeps_other_metadata_and_adds_the_source(fresh_db: str) -> None:
    user = str(uuid.uuid4())
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        row = conn.execute(
            "SELECT api.emit_domain_event(p_event_id => %s, p_event_type => "
            "'organization.bootstrap.initiated', p_aggregate_type => 'organization', "
            "p_aggregate_id => %s, p_event_data => %s, p_event_metadata => %s)",
            (uuid.uuid4(), uuid.uuid4(), Jsonb(INITIATED), Jsonb({"user_id": user})),
        ).fetchone()
    assert row is not None
    event = stored(fresh_db, row[0])
    assert event["event_metadata"] == {"source": "api.emit_domain_event", "user_id": user}
    default_contract().validate_event(event)


@pytest.mark.parametrize(
    ("event_type", "metadata", "field"),
    [
        ("workflow.queue.pending", {"source": "api"}, "event_metadata.causation_id"),
        ("organization.bootstrap.initiated", {"source": ""}, "event_metadata.source"),
        ("organization.bootstrap.initiated", {"source": 7}, "event_metadata.source"),
        ("organization.created", [], "event_metadata must be a JSON object"),
    ],
)
def test_metadata_no_default_can_fix_is_refused_naming_the_field(
    fresh_db: str, event_type: str, metadata: object, field: str
) -> None:
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.CheckViolation, match=field) as info:
            conn.execute(
                "SELECT api.emit_domain_event(p_stream_id => %s, p_stream_type => 'organization', "
                "p_event_type => %s, p_event_data => '{}'::jsonb, p_event_metadata => %s)",
                (uuid.uuid4(), event_type, Jsonb(metadata)),
            )
        assert event_type in str(info.value)
        assert conn.execute("SELECT count(*) FROM domain_events").fetchone() == (0,)


def test_event_types_outside_the_contract_are_left_alone(fresh_db: str) -> None:
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        row = conn.execute(
            "SELECT api.emit_domain_event(p_stream_id => %s, p_stream_type => 'organization', "
            "p_event_type => 'test.happened', p_event_data => '{}'::jsonb)",
            (uuid.uuid4(),),
        ).fetchone()
    assert row is not None
    assert stored(fresh_db, row[0])["event_metadata"] == {}
