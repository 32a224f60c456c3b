"""Accepting an invitation: check the token, its expiry and single use; emit once.

The decision (:func:`verdict`) is pure. The invitation is read from
``invitations_projection`` by the id the token names; the token's hash is compared with
the recorded one in constant time. Single use is decided by the event store itself, not
by the projection (which may lag): ``invitation.accepted`` is appended with the key
``{invitation_id}:invitation.accepted`` and an event id chosen here, and only when the
store returns that id was this request the one that accepted. A refused token writes
nothing.
"""

from __future__ import annotations

import enum
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

import orjson
import psycopg
from psycopg.types.json import Jsonb

from pipeline import events as ev
from pipeline.eventstore import idempotency_key
from pipeline.invitations import tokens

log = logging.getLogger(__name__)

SOURCE = "pipeline.invitations"


class Outcome(enum.Enum):
    """What a token is worth now (VALID) or what accepting it did."""

    VALID = "valid"
    ACCEPTED = "accepted"
    ALREADY_ACCEPTED = "already_accepted"
    EXPIRED = "expired"
    REVOKED = "revoked"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class InvitationState:
    """The projection's row of one invitation."""

    invitation_id: uuid.UUID
    organization_id: uuid.UUID
    email: str
    role: str
    status: str
    token_hash: str | None
    expires_at: datetime


def verdict(token: str, state: InvitationState | None, now: datetime) -> Outcome:
    """Whether ``token`` may accept ``state`` at ``now`` (VALID) or why not."""
    if state is None or not tokens.matches(token, state.token_hash):
        # A wrong token and an unknown invitation look the same from outside.
        return Outcome.UNKNOWN
    if state.status == "revoked":
        return Outcome.REVOKED
    if state.status == "accepted":
        return Outcome.ALREADY_ACCEPTED
    if now >= state.expires_at:
        return Outcome.EXPIRED
    return Outcome.VALID


_LOAD_SQL = (
    "SELECT id, organization_id, email, role, status, token_hash, expires_at "
    "FROM invitations_projection WHERE id = %s"
)
_EMIT_SQL = (
    "SELECT api.emit_domain_event(p_event_id => %s, p_event_type => %s, "
    "p_aggregate_type => %s, p_aggregate_id => %s, p_event_data => %s, "
    "p_event_metadata => %s, p_idempotency_key => %s)"
)


async def load(conn: psycopg.AsyncConnection[object], token: str) -> InvitationState | None:
    """The invitation ``token`` names, or None (malformed token, no such row)."""
    invitation_id = tokens.invitation_id_of(token)
    if invitation_id is None:
        return None
    cur = await conn.execute(_LOAD_SQL, (invitation_id,))
    row = await cur.fetchone()
    if row is None:
        return None
    assert isinstance(row, tuple)
    inv_id, org, email, role, status, token_hash, expires_at = row
    return InvitationState(inv_id, org, email, role, status, token_hash, expires_at)


async def check(dsn: str, token: str, now: datetime) -> Outcome:
    """What ``token`` is worth now; reads only."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        return verdict(token, await load(conn, token), now)


async def accept(dsn: str, token: str, now: datetime) -> Outcome:
    """Accept the invitation of ``token`` once; ACCEPTED only for the request that did."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        state = await load(conn, token)
        outcome = verdict(token, state, now)
        if outcome is not Outcome.VALID or state is None:
            log.info(
                "invitation refused invitation_id=%s outcome=%s",
                state.invitation_id if state else "-",
                outcome.value,
            )
            return outcome
        proposed = uuid.uuid4()
        data = {"invitation_id": str(state.invitation_id), "email": state.email, "role": state.role}
        dumps = orjson.dumps
        cur = await conn.execute(
            _EMIT_SQL,
            (
                proposed,
                ev.INVITATION_ACCEPTED,
                ev.STREAM_TYPE_ORGANIZATION,
                state.organization_id,
                Jsonb(data, dumps=lambda o: dumps(o).decode()),
                Jsonb({"source": SOURCE}, dumps=lambda o: dumps(o).decode()),
                idempotency_key(state.invitation_id, ev.INVITATION_ACCEPTED),
            ),
        )
        row = await cur.fetchone()
    event_id = row[0] if isinstance(row, tuple) else None
    if event_id != proposed:
        log.info("invitation already accepted invitation_id=%s", state.invitation_id)
        return Outcome.ALREADY_ACCEPTED
    log.info(
        "invitation accepted invitation_id=%s organization_id=%s event_id=%s",
        state.invitation_id,
        state.organization_id,
        event_id,
    )
    return Outcome.ACCEPTED
