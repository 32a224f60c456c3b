"""Domain events and Kafka records shared by the agents' unit tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pipeline import events as ev
from pipeline.agents.enqueue import pending_event_for
from pipeline.agents.records import DomainEvent
from replication.lsn import LSN, Position

ORG = uuid.uuid4()
NOW = datetime(2026, 1, 1, tzinfo=UTC)
ADMINS = [{"email": "ada@example.com", "role": "organization_admin"}]


def domain_event(kind: str, data: dict[str, object]) -> DomainEvent:
    return DomainEvent(
        id=uuid.uuid4(),
        stream_id=ORG,
        stream_type="organization",
        stream_version=1,
        event_type=kind,
        event_data=data,
        event_metadata={"source": "api"},
        idempotency_key=None,
        created_at=NOW,
        position=Position(LSN(0x10), 0),
        commit_ts=NOW,
        xid=7,
    )


INITIATED = domain_event(
    ev.BOOTSTRAP_INITIATED, {"name": "Acme", "subdomain": "acme", "admins": ADMINS}
)


def pending_from_initiated() -> DomainEvent:
    new = pending_event_for(INITIATED)
    assert new is not None
    return domain_event(ev.QUEUE_PENDING, dict(new.event_data))


HEADERS = [
    ("commit_lsn", b"16/B374D848"),
    ("idx", b"2"),
    ("xid", b"747"),
    ("commit_ts", b"2026-01-01T00:00:00+00:00"),
]


def row(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": str(uuid.uuid4()),
        "stream_id": str(ORG),
        "stream_type": "organization",
        "stream_version": 1,
        "event_type": ev.BOOTSTRAP_INITIATED,
        "event_data": {"name": "Acme", "subdomain": "acme", "admins": ADMINS},
        "event_metadata": {"source": "api"},
        "idempotency_key": None,
        "created_at": "2026-01-01T00:00:00.123456+00:00",
    }
    return {**base, **overrides}
