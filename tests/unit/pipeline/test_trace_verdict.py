"""`pipeline trace`'s verdict (pure): complete, incomplete with the first missing event,
failed with its reason; +ms from `initiated`; ids and workflow ids."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline import events as ev
from pipeline import trace

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ADMINS = {"admins": [{"email": "a@x.test"}, {"email": "b@x.test"}]}


def chain(types: list[str], data: dict[str, dict[str, Any]] | None = None) -> list[Any]:
    rows = []
    for n, event_type in enumerate(types):
        payload = (data or {}).get(event_type, {})
        if event_type == ev.BOOTSTRAP_INITIATED:
            payload = ADMINS
        rows.append((n + 1, event_type, T0 + timedelta(milliseconds=100 * n), payload))
    return trace.timeline(rows)


def full() -> list[str]:
    types: list[str] = []
    for event_type in trace.SUCCESS_CHAIN:
        types += [event_type] * (2 if event_type in trace.PER_ADMIN else 1)
    return types


def test_a_whole_chain_is_complete_with_ms_from_initiated() -> None:
    events = chain(full())
    assert trace.verdict(events) == trace.Verdict("completed")
    assert [e.ms for e in events[:3]] == [0.0, 100.0, 200.0]


def test_the_first_missing_event_is_named_and_order_does_not_matter() -> None:
    types = full()
    types.remove(ev.ORGANIZATION_CREATED)
    assert trace.verdict(chain(types)).missing == ev.ORGANIZATION_CREATED
    # workflow_started after organization.created is still complete.
    swapped = full()
    i, j = swapped.index(ev.BOOTSTRAP_WORKFLOW_STARTED), swapped.index(ev.ORGANIZATION_CREATED)
    swapped[i], swapped[j] = swapped[j], swapped[i]
    assert trace.verdict(chain(swapped)).ok
    one_email = full()
    one_email.remove(ev.INVITATION_EMAIL_SENT)
    assert trace.verdict(chain(one_email)).missing == f"{ev.INVITATION_EMAIL_SENT} (1 of 2)"


def test_a_failed_bootstrap_is_failed_with_its_reason() -> None:
    types = [
        ev.BOOTSTRAP_INITIATED,
        ev.QUEUE_PENDING,
        ev.QUEUE_CLAIMED,
        ev.DNS_RECORD_REMOVED,
        ev.BOOTSTRAP_FAILED,
        ev.QUEUE_FAILED,
    ]
    data = {
        ev.BOOTSTRAP_FAILED: {"stage": "dns", "reason": "provider refused"},
        ev.DNS_RECORD_REMOVED: {"reason": "compensation"},
    }
    result = trace.verdict(chain(types, data))
    assert result.state == "failed"
    assert result.reason is not None
    assert "failed at dns: provider refused" in result.reason
    assert "compensated: organization.dns.removed" in result.reason
    unfinished = trace.verdict(chain(types[:-1], data))
    assert unfinished.state == "incomplete"
    assert unfinished.missing == ev.QUEUE_FAILED


def test_targets_are_org_ids_or_workflow_ids() -> None:
    org = uuid.uuid4()
    assert trace.org_id_of(str(org)) == org
    assert trace.org_id_of(ev.workflow_id_for(str(org))) == org
    assert trace.org_id_of("acme") is None
