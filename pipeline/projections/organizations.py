"""``organizations_projection``: one row per organization, folded from its stream.

- ``organization.bootstrap.initiated`` / ``organization.created`` create or refresh the row
  (name, subdomain; a new row starts ``bootstrapping``);
- ``organization.dns.created`` / ``organization.dns.removed`` merge the DNS state, fqdn and
  record id into ``subdomain_metadata``;
- ``organization.bootstrap.completed`` makes it ``active``; ``organization.bootstrap.failed``
  makes it ``failed`` with ``failure_reason = "{stage}: {reason}"``.

Position guard: a row keeps ``(last_commit_lsn, last_idx)`` of the last event applied and
ignores any event at or before it, so redelivery and replay are no-ops. The pure fold
(:func:`fold_organizations`) and the SQL (:func:`apply_organization_events`) implement
the same rules; the integration tests check that they agree.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

import orjson
import psycopg
from psycopg.types.json import Jsonb

from pipeline import events as ev
from pipeline.projections import event_row as er
from pipeline.projections.statements import Statement, run_in_order
from replication.lsn import Position

BOOTSTRAPPING = "bootstrapping"
ACTIVE = "active"
FAILED = "failed"
_CREATING = frozenset({ev.BOOTSTRAP_INITIATED, ev.ORGANIZATION_CREATED})
_UPDATING = frozenset(
    {ev.DNS_RECORD_CREATED, ev.DNS_RECORD_REMOVED, ev.BOOTSTRAP_COMPLETED, ev.BOOTSTRAP_FAILED}
)


@dataclass(frozen=True, slots=True)
class OrganizationUpsert:
    """The change one event makes to its organization's row.

    ``creates`` says the event carries enough to create a missing row; otherwise it only
    updates an existing one. ``status`` None keeps the status (and the failure reason);
    ``metadata`` is merged into ``subdomain_metadata``.
    """

    org_id: uuid.UUID
    position: Position
    at: datetime
    creates: bool
    name: str | None = None
    subdomain: str | None = None
    status: str | None = None
    failure_reason: str | None = None
    metadata: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OrganizationRow:
    """A row of ``organizations_projection``."""

    id: uuid.UUID
    name: str
    subdomain: str
    subdomain_metadata: Mapping[str, object]
    status: str
    failure_reason: str | None
    created_at: datetime
    updated_at: datetime
    last_position: Position


def organization_upsert(row: er.EventRow) -> OrganizationUpsert | None:
    """The upsert ``row`` makes, or None when the event does not concern this projection."""
    kind = er.event_type(row)
    if kind not in _CREATING and kind not in _UPDATING:
        return None
    data = er.event_data(row)
    base = OrganizationUpsert(
        org_id=er.stream_id(row),
        position=er.position_of(row),
        at=er.created_at(row),
        creates=kind in _CREATING,
    )
    if kind in _CREATING:
        subdomain = er.text(data, "subdomain", row)
        metadata = {"subdomain": subdomain}
        status = BOOTSTRAPPING if kind == ev.BOOTSTRAP_INITIATED else None
        return replace(
            base,
            name=er.text(data, "name", row),
            subdomain=subdomain,
            status=status,
            metadata=metadata,
        )
    if kind == ev.DNS_RECORD_CREATED:
        metadata = {
            "dns_state": "created",
            "fqdn": er.text(data, "fqdn", row),
            "record_id": er.text(data, "record_id", row),
            "record_type": er.text(data, "record_type", row),
            "provider": er.text(data, "provider", row),
        }
        return replace(base, metadata=metadata)
    if kind == ev.DNS_RECORD_REMOVED:
        metadata = {
            "dns_state": "removed",
            "fqdn": er.text(data, "fqdn", row),
            "record_id": er.text(data, "record_id", row),
        }
        return replace(base, metadata=metadata)
    if kind == ev.BOOTSTRAP_COMPLETED:
        return replace(base, status=ACTIVE)
    stage, reason = er.text(data, "stage", row), er.text(data, "reason", row)
    return replace(base, status=FAILED, failure_reason=f"{stage}: {reason}")


def organization_upserts(rows: Iterable[er.EventRow]) -> list[OrganizationUpsert]:
    """The upserts of ``rows``, in the order given (which must be commit order)."""
    upserts = (organization_upsert(row) for row in rows)
    return [u for u in upserts if u is not None]


def apply_upsert(current: OrganizationRow | None, up: OrganizationUpsert) -> OrganizationRow | None:
    """The row after ``up`` (pure twin of the SQL); None while the organization is unknown."""
    if current is None:
        if not up.creates or up.name is None or up.subdomain is None:
            return None
        return OrganizationRow(
            id=up.org_id,
            name=up.name,
            subdomain=up.subdomain,
            subdomain_metadata=dict(up.metadata),
            status=up.status or BOOTSTRAPPING,
            failure_reason=up.failure_reason,
            created_at=up.at,
            updated_at=up.at,
            last_position=up.position,
        )
    if up.position <= current.last_position:
        return current
    changes_status = up.status is not None
    return replace(
        current,
        name=up.name if up.name is not None else current.name,
        subdomain=up.subdomain if up.subdomain is not None else current.subdomain,
        subdomain_metadata={**current.subdomain_metadata, **up.metadata},
        status=up.status if up.status is not None else current.status,
        failure_reason=up.failure_reason if changes_status else current.failure_reason,
        updated_at=up.at,
        last_position=up.position,
    )


def fold_organizations(
    rows: Iterable[er.EventRow], state: Mapping[uuid.UUID, OrganizationRow] | None = None
) -> dict[uuid.UUID, OrganizationRow]:
    """Fold event rows into organization rows, starting from ``state``."""
    result = dict(state or {})
    for up in organization_upserts(rows):
        new = apply_upsert(result.get(up.org_id), up)
        if new is not None:
            result[up.org_id] = new
    return result


def _jsonb(value: Mapping[str, object]) -> Jsonb:
    return Jsonb(value, dumps=lambda o: orjson.dumps(o).decode())


# Creating events insert or refresh; the guard in WHERE makes an old event a no-op.
_UPSERT_SQL = """
INSERT INTO organizations_projection AS o
    (id, name, subdomain, subdomain_metadata, status, failure_reason,
     created_at, updated_at, last_commit_lsn, last_idx)
VALUES (%(id)s, %(name)s, %(subdomain)s, %(metadata)s,
        COALESCE(%(status)s::text, 'bootstrapping'), %(reason)s::text,
        %(at)s, %(at)s, %(lsn)s::pg_lsn, %(idx)s)
ON CONFLICT (id) DO UPDATE SET
    name = EXCLUDED.name,
    subdomain = EXCLUDED.subdomain,
    subdomain_metadata = o.subdomain_metadata || EXCLUDED.subdomain_metadata,
    status = COALESCE(%(status)s::text, o.status),
    failure_reason = CASE WHEN %(status)s::text IS NULL THEN o.failure_reason
                          ELSE EXCLUDED.failure_reason END,
    updated_at = EXCLUDED.updated_at,
    last_commit_lsn = EXCLUDED.last_commit_lsn,
    last_idx = EXCLUDED.last_idx
WHERE (o.last_commit_lsn, o.last_idx) < (EXCLUDED.last_commit_lsn, EXCLUDED.last_idx)
"""

_UPDATE_SQL = """
UPDATE organizations_projection AS o SET
    subdomain_metadata = o.subdomain_metadata || %(metadata)s,
    status = COALESCE(%(status)s::text, o.status),
    failure_reason = CASE WHEN %(status)s::text IS NULL THEN o.failure_reason
                          ELSE %(reason)s::text END,
    updated_at = %(at)s,
    last_commit_lsn = %(lsn)s::pg_lsn,
    last_idx = %(idx)s
WHERE o.id = %(id)s AND (o.last_commit_lsn, o.last_idx) < (%(lsn)s::pg_lsn, %(idx)s)
"""


async def apply_organization_events(
    conn: psycopg.AsyncConnection[object], events: Iterable[er.EventRow]
) -> int:
    """Write the upserts of ``events`` in the caller's transaction (nothing is committed).

    Returns how many events changed a row; events at or before a row's position and
    events of unknown organizations change nothing.
    """
    statements: list[Statement] = []
    for up in organization_upserts(events):
        params: dict[str, object] = {
            "id": up.org_id,
            "name": up.name,
            "subdomain": up.subdomain,
            "metadata": _jsonb(up.metadata),
            "status": up.status,
            "reason": up.failure_reason,
            "at": up.at,
            "lsn": str(up.position.commit_lsn),
            "idx": up.position.idx,
        }
        statements.append((_UPSERT_SQL if up.creates else _UPDATE_SQL, params))
    return await run_in_order(conn, statements)
