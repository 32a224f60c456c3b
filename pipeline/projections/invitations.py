"""``invitations_projection``: one row per invitation, folded from the organization's stream.

- ``user.invited`` creates the row (``pending``, with email, role, token_hash, expires_at;
  an event written before migration 0006 carries the plaintext ``token`` instead, and its
  row gets no hash, so that invitation can never be accepted);
- ``invitation.email.sent`` makes it ``sent``;
- ``invitation.accepted`` makes it ``accepted``: a later ``sent`` (the invitee followed
  the link before the worker recorded the email) does not undo it;
- ``invitation.revoked`` makes it ``revoked``, which is final: a later ``sent`` (an email
  that went out while the bootstrap was being compensated) does not revive it.

Same position guard as every projection: a row ignores events at or before
``(last_commit_lsn, last_idx)``. :func:`fold_invitations` is the pure twin of
:func:`apply_invitation_events`.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

import orjson
import psycopg

from pipeline import events as ev
from pipeline.projections import event_row as er
from pipeline.projections.statements import Statement, run_in_order
from replication.lsn import Position

PENDING = "pending"
SENT = "sent"
REVOKED = "revoked"
ACCEPTED = "accepted"
_STATUS_BY_EVENT = {
    ev.INVITATION_EMAIL_SENT: SENT,
    ev.INVITATION_REVOKED: REVOKED,
    ev.INVITATION_ACCEPTED: ACCEPTED,
}


@dataclass(frozen=True, slots=True)
class InvitationDetails:
    """What ``user.invited`` says about an invitation."""

    email: str
    role: str
    token_hash: str | None
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class InvitationUpsert:
    """The change one event makes: ``details`` when it creates the row, else a ``status``."""

    invitation_id: uuid.UUID
    organization_id: uuid.UUID
    position: Position
    at: datetime
    details: InvitationDetails | None = None
    status: str | None = None


@dataclass(frozen=True, slots=True)
class InvitationRow:
    """A row of ``invitations_projection``."""

    id: uuid.UUID
    organization_id: uuid.UUID
    email: str
    role: str
    status: str
    token_hash: str | None
    expires_at: datetime
    created_at: datetime
    updated_at: datetime
    last_position: Position


def invitation_upsert(row: er.EventRow) -> InvitationUpsert | None:
    """The upsert ``row`` makes, or None when the event does not concern invitations."""
    kind = er.event_type(row)
    status = _STATUS_BY_EVENT.get(kind)
    if status is None and kind != ev.USER_INVITED:
        return None
    data = er.event_data(row)
    invitation_id = er.uuid_of(data.get("invitation_id"), "event_data.invitation_id", row)
    organization_id = er.stream_id(row)
    position = er.position_of(row)
    at = er.created_at(row)
    if status is not None:
        return InvitationUpsert(invitation_id, organization_id, position, at, None, status)
    details = InvitationDetails(
        email=er.text(data, "email", row),
        role=er.text(data, "role", row),
        token_hash=_hash_of(data),
        expires_at=er.time_of(data.get("expires_at"), "event_data.expires_at", row),
    )
    return InvitationUpsert(invitation_id, organization_id, position, at, details)


def invitation_upserts(rows: Iterable[er.EventRow]) -> list[InvitationUpsert]:
    """The upserts of ``rows``, in the order given (which must be commit order)."""
    upserts = (invitation_upsert(row) for row in rows)
    return [u for u in upserts if u is not None]


def _hash_of(data: Mapping[str, object]) -> str | None:
    value = data.get("token_hash")
    return value if isinstance(value, str) else None


def _next_status(current: str, new: str) -> str:
    if current == REVOKED or (current == ACCEPTED and new == SENT):
        return current
    return new


def apply_upsert(current: InvitationRow | None, up: InvitationUpsert) -> InvitationRow | None:
    """The row after ``up`` (pure twin of the SQL); None while the invitation is unknown."""
    if current is None:
        if up.details is None:
            return None
        d = up.details
        return InvitationRow(
            id=up.invitation_id,
            organization_id=up.organization_id,
            email=d.email,
            role=d.role,
            status=PENDING,
            token_hash=d.token_hash,
            expires_at=d.expires_at,
            created_at=up.at,
            updated_at=up.at,
            last_position=up.position,
        )
    if up.position <= current.last_position:
        return current
    if up.details is not None:
        d = up.details
        changed = replace(
            current, email=d.email, role=d.role, token_hash=d.token_hash, expires_at=d.expires_at
        )
    else:
        changed = replace(current, status=_next_status(current.status, up.status or PENDING))
    return replace(changed, updated_at=up.at, last_position=up.position)


def fold_invitations(
    rows: Iterable[er.EventRow], state: Mapping[uuid.UUID, InvitationRow] | None = None
) -> dict[uuid.UUID, InvitationRow]:
    """Fold event rows into invitation rows, starting from ``state``."""
    result = dict(state or {})
    for up in invitation_upserts(rows):
        new = apply_upsert(result.get(up.invitation_id), up)
        if new is not None:
            result[up.invitation_id] = new
    return result


_UPSERT_SQL = """
INSERT INTO invitations_projection AS i
    (id, organization_id, email, role, status, token_hash, expires_at,
     created_at, updated_at, last_commit_lsn, last_idx)
VALUES (%(id)s, %(org)s, %(email)s, %(role)s, 'pending', %(token_hash)s, %(expires_at)s,
        %(at)s, %(at)s, %(lsn)s::pg_lsn, %(idx)s)
ON CONFLICT (id) DO UPDATE SET
    email = EXCLUDED.email,
    role = EXCLUDED.role,
    token_hash = EXCLUDED.token_hash,
    expires_at = EXCLUDED.expires_at,
    updated_at = EXCLUDED.updated_at,
    last_commit_lsn = EXCLUDED.last_commit_lsn,
    last_idx = EXCLUDED.last_idx
WHERE (i.last_commit_lsn, i.last_idx) < (EXCLUDED.last_commit_lsn, EXCLUDED.last_idx)
"""

# 'revoked' is final, 'accepted' outlives 'sent'; see the module docstring.
# The status changes of a run of events, one statement per round: round k holds the k-th
# status change of each invitation in the run, so every invitation's changes still apply
# one after the other, in commit order (the CASE depends on the status before), while a
# batch of N changes to distinct invitations is one statement, not N.
_STATUS_ROUND_SQL = """
UPDATE invitations_projection AS i SET
    status = CASE
        WHEN i.status = 'revoked' THEN i.status
        WHEN i.status = 'accepted' AND u.status = 'sent' THEN i.status
        ELSE u.status
    END,
    updated_at = u.at,
    last_commit_lsn = u.lsn,
    last_idx = u.idx
FROM (SELECT r.id, r.status, r.at, '0/0'::pg_lsn + r.lsn AS lsn, r.idx
      FROM json_to_recordset(%s::json) AS r(id uuid, status text, at timestamptz, lsn numeric,
                                            idx integer)) AS u
WHERE i.id = u.id AND (i.last_commit_lsn, i.last_idx) < (u.lsn, u.idx)
"""


def status_rounds(
    upserts: list[InvitationUpsert],
) -> list[list[InvitationUpsert]]:
    """Status changes split into rounds: an invitation's k-th change goes to round k, so no
    round names an invitation twice and each invitation's changes keep their order."""
    rounds: list[list[InvitationUpsert]] = []
    seen: dict[uuid.UUID, int] = {}
    for up in upserts:
        k = seen.get(up.invitation_id, 0)
        seen[up.invitation_id] = k + 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(up)
    return rounds


def status_round_json(round_: list[InvitationUpsert]) -> bytes:
    """One round of status changes as the one JSON parameter of the round's UPDATE.

    One text parameter that the server unpacks (``json_to_recordset``) costs the client
    far less than five arrays psycopg dumps element by element; orjson writes the ids and
    times as PostgreSQL reads them back (canonical UUIDs, RFC 3339 to the microsecond), the
    LSN as its number of bytes (``'0/0'::pg_lsn + n`` on the server).
    """
    return orjson.dumps(
        [
            {
                "id": up.invitation_id,
                "status": up.status,
                "at": up.at,
                "lsn": up.position.commit_lsn.value,  # bytes from 0/0: no text to format
                "idx": up.position.idx,
            }
            for up in round_
        ]
    )


async def _apply_status_run(
    conn: psycopg.AsyncConnection[object], run: list[InvitationUpsert]
) -> int:
    changed = 0
    async with conn.cursor() as cur:
        for round_ in status_rounds(run):
            await cur.execute(_STATUS_ROUND_SQL, (status_round_json(round_).decode(),))
            changed += max(cur.rowcount, 0)
    return changed


async def apply_invitation_events(
    conn: psycopg.AsyncConnection[object], events: Iterable[er.EventRow]
) -> int:
    """Write the upserts of ``events`` in the caller's transaction (nothing is committed).

    Returns how many events changed a row. Runs of creations go out as one pipelined
    ``executemany``; runs of status changes as one ``UPDATE ... FROM json_to_recordset`` per round, its rows one JSON parameter
    (:func:`status_rounds`); the runs themselves in commit order.
    """
    changed = 0
    upserts = list(invitation_upserts(events))
    for creates, run in itertools.groupby(upserts, key=lambda up: up.details is not None):
        batch = list(run)
        if not creates:
            changed += await _apply_status_run(conn, batch)
            continue
        statements: list[Statement] = []
        for up in batch:
            if up.details is None:  # pragma: no cover - the groupby key says it is set
                continue
            statements.append(
                (
                    _UPSERT_SQL,
                    {
                        "id": up.invitation_id,
                        "org": up.organization_id,
                        "at": up.at,
                        "lsn": str(up.position.commit_lsn),
                        "idx": up.position.idx,
                        "status": up.status,
                        "email": up.details.email,
                        "role": up.details.role,
                        "token_hash": up.details.token_hash,
                        "expires_at": up.details.expires_at,
                    },
                )
            )
        changed += await run_in_order(conn, statements)
    return changed
