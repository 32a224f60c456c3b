"""The pure folds of the organization and invitation projections, on hand-made event rows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from pipeline import events as ev
from pipeline.projections.event_row import EventRow, ProjectionError
from pipeline.projections.invitations import fold_invitations, invitation_upserts
from pipeline.projections.organizations import fold_organizations, organization_upsert
from replication.lsn import LSN, Position

ORG = uuid.uuid4()
INV = uuid.uuid4()
T0 = datetime(2025, 11, 26, 3, 0, tzinfo=UTC)


def event(
    event_type: str, data: dict[str, object], lsn: str, idx: int = 0, minute: int = 0
) -> EventRow:
    return {
        "id": str(uuid.uuid4()),
        "stream_id": str(ORG),
        "stream_type": "organization",
        "event_type": event_type,
        "event_data": data,
        "event_metadata": {"source": "test"},
        "created_at": (T0 + timedelta(minutes=minute)).isoformat(),
        "commit_lsn": lsn,
        "idx": idx,
    }


INITIATED = event(
    ev.BOOTSTRAP_INITIATED,
    {"name": "Acme", "subdomain": "acme", "admins": [{"email": "a@x.org", "role": "admin"}]},
    "0/100",
)
CREATED = event(ev.ORGANIZATION_CREATED, {"name": "Acme Inc", "subdomain": "acme"}, "0/200", 0, 1)
DNS = event(
    ev.DNS_RECORD_CREATED,
    {
        "subdomain": "acme",
        "fqdn": "acme.example.test",
        "record_type": "CNAME",
        "content": "example.test",
        "provider": "local",
        "record_id": "rec-1",
    },
    "0/200",
    1,
    2,
)
COMPLETED = event(ev.BOOTSTRAP_COMPLETED, {"workflow_id": f"org-bootstrap-{ORG}"}, "0/300", 0, 3)
FAILED = event(
    ev.BOOTSTRAP_FAILED,
    {"workflow_id": f"org-bootstrap-{ORG}", "stage": "dns", "reason": "taken"},
    "0/300",
    0,
    3,
)
DNS_REMOVED = event(
    ev.DNS_RECORD_REMOVED,
    {"fqdn": "acme.example.test", "record_id": "rec-1", "reason": "x"},
    "0/280",
    0,
    3,
)


def test_a_bootstrap_folds_into_an_active_organization() -> None:
    [org] = fold_organizations([INITIATED, CREATED, DNS, COMPLETED]).values()
    assert (org.id, org.name, org.subdomain, org.status, org.failure_reason) == (
        ORG,
        "Acme Inc",
        "acme",
        "active",
        None,
    )
    assert org.subdomain_metadata == {
        "subdomain": "acme",
        "dns_state": "created",
        "fqdn": "acme.example.test",
        "record_id": "rec-1",
        "record_type": "CNAME",
        "provider": "local",
    }
    assert org.created_at == T0
    assert org.updated_at == T0 + timedelta(minutes=3)
    assert org.last_position == Position(LSN.parse("0/300"), 0)


def test_a_failure_records_stage_and_reason_and_the_dns_removal() -> None:
    [org] = fold_organizations([INITIATED, CREATED, DNS, DNS_REMOVED, FAILED]).values()
    assert (org.status, org.failure_reason) == ("failed", "dns: taken")
    assert org.subdomain_metadata["dns_state"] == "removed"


def test_events_at_or_before_the_row_position_are_ignored() -> None:
    state = fold_organizations([INITIATED, CREATED, DNS, COMPLETED])
    # Redelivery of everything, and an old event arriving late, change nothing.
    assert fold_organizations([INITIATED, CREATED, DNS, COMPLETED], state) == state
    assert fold_organizations([CREATED], state) == state
    # The same event (same position) delivered twice is applied once.
    twice = fold_organizations([INITIATED, INITIATED])
    assert twice == fold_organizations([INITIATED])


def test_positions_compare_as_numbers_and_idx_orders_one_transaction() -> None:
    # As text "0/A00" < "0/FF" would be wrong; as LSNs 0/FF < 0/A00. Likewise 1/0 > 0/FFFFFFFF.
    early = event(ev.ORGANIZATION_CREATED, {"name": "Old", "subdomain": "acme"}, "0/FF", 0)
    late = event(ev.ORGANIZATION_CREATED, {"name": "New", "subdomain": "acme"}, "0/A00", 0)
    assert fold_organizations([late, early])[ORG].name == "New"
    a = event(ev.ORGANIZATION_CREATED, {"name": "A", "subdomain": "acme"}, "0/FFFFFFFF", 5)
    b = event(ev.ORGANIZATION_CREATED, {"name": "B", "subdomain": "acme"}, "1/0", 0)
    assert fold_organizations([b, a])[ORG].name == "B"
    first = event(ev.ORGANIZATION_CREATED, {"name": "First", "subdomain": "acme"}, "0/500", 0)
    second = event(ev.ORGANIZATION_CREATED, {"name": "Second", "subdomain": "acme"}, "0/500", 1)
    assert fold_organizations([second, first])[ORG].name == "Second"


def test_updates_for_an_unknown_organization_create_nothing() -> None:
    assert fold_organizations([DNS, COMPLETED]) == {}


def test_organization_created_alone_creates_a_bootstrapping_row() -> None:
    assert fold_organizations([CREATED])[ORG].status == "bootstrapping"


def test_completion_after_a_failure_clears_the_reason() -> None:
    later = event(ev.BOOTSTRAP_COMPLETED, {"workflow_id": "w"}, "0/400", 0, 4)
    org = fold_organizations([INITIATED, FAILED, later])[ORG]
    assert (org.status, org.failure_reason) == ("active", None)


def test_unrelated_events_are_skipped() -> None:
    pending = event(ev.QUEUE_PENDING, {"job_id": "j"}, "0/100")
    assert organization_upsert(pending) is None
    assert invitation_upserts([pending, INITIATED]) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"commit_lsn": "nope"}, "invalid LSN"),
        ({"idx": -1}, "idx must be a non-negative int"),
        ({"idx": "0"}, "idx must be a non-negative int"),
        ({"stream_id": "not-a-uuid"}, "is not a UUID"),
        ({"created_at": "2025-11-26T03:00:00"}, "has no UTC offset"),
        ({"event_data": "{}"}, "event_data is not an object"),
        ({"event_data": {"subdomain": "acme"}}, "event_data.name must be a string"),
    ],
)
def test_malformed_rows_raise_projection_error(change: dict[str, object], message: str) -> None:
    with pytest.raises(ProjectionError, match=message):
        fold_organizations([{**CREATED, **change}])


def invited(lsn: str, idx: int = 0) -> EventRow:
    return event(
        ev.USER_INVITED,
        {
            "invitation_id": str(INV),
            "email": "a@x.org",
            "role": "admin",
            "token_hash": "a" * 64,
            "expires_at": "2025-12-03T03:00:00+00:00",
        },
        lsn,
        idx,
    )


def status_event(event_type: str, lsn: str, idx: int = 0) -> EventRow:
    data: dict[str, object] = {"invitation_id": str(INV)}
    data |= {"email": "a@x.org"} if event_type == ev.INVITATION_EMAIL_SENT else {"reason": "r"}
    return event(event_type, data, lsn, idx, 5)


def test_an_invitation_goes_pending_then_sent() -> None:
    rows = fold_invitations([invited("0/100")])
    assert rows[INV].status == "pending"
    assert (rows[INV].organization_id, rows[INV].email, rows[INV].token_hash) == (
        ORG,
        "a@x.org",
        "a" * 64,
    )
    assert rows[INV].expires_at == datetime(2025, 12, 3, 3, tzinfo=UTC)
    rows = fold_invitations([status_event(ev.INVITATION_EMAIL_SENT, "0/200")], rows)
    assert rows[INV].status == "sent"
    assert rows[INV].last_position == Position(LSN.parse("0/200"), 0)


def test_revoked_is_final() -> None:
    rows = fold_invitations(
        [
            invited("0/100"),
            status_event(ev.INVITATION_REVOKED, "0/200"),
            status_event(ev.INVITATION_EMAIL_SENT, "0/300"),
        ]
    )
    assert rows[INV].status == "revoked"
    assert rows[INV].last_position == Position(LSN.parse("0/300"), 0)


def test_invitation_guard_ignores_redelivery() -> None:
    events = [invited("0/100"), status_event(ev.INVITATION_EMAIL_SENT, "0/100", 1)]
    rows = fold_invitations(events)
    assert fold_invitations(events, rows) == rows
    assert fold_invitations([status_event(ev.INVITATION_REVOKED, "0/100", 1)], rows) == rows


def test_status_before_the_invitation_exists_creates_nothing() -> None:
    assert fold_invitations([status_event(ev.INVITATION_EMAIL_SENT, "0/100")]) == {}


def test_accepted_outlives_a_late_sent_and_revoked_still_wins() -> None:
    accepted = event(
        ev.INVITATION_ACCEPTED,
        {"invitation_id": str(INV), "email": "a@x.org", "role": "admin"},
        "0/200",
        0,
        6,
    )
    rows = fold_invitations(
        [invited("0/100"), accepted, status_event(ev.INVITATION_EMAIL_SENT, "0/300")]
    )
    assert rows[INV].status == "accepted"
    rows = fold_invitations([status_event(ev.INVITATION_REVOKED, "0/400")], rows)
    assert rows[INV].status == "revoked"


def test_a_legacy_invitation_with_a_plaintext_token_gets_no_hash() -> None:
    legacy = event(
        ev.USER_INVITED,
        {
            "invitation_id": str(INV),
            "email": "a@x.org",
            "role": "admin",
            "token": "t" * 43,
            "expires_at": "2025-12-03T03:00:00+00:00",
        },
        "0/100",
    )
    rows = fold_invitations([legacy])
    assert rows[INV].token_hash is None
    assert "t" * 43 not in repr(rows[INV])
