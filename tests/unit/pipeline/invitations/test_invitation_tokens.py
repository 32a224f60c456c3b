"""Invitation tokens: derived (never stored), hashed for the log, verified in constant time."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from pipeline.invitations.accept import InvitationState, Outcome, verdict
from pipeline.invitations.tokens import derive_token, invitation_id_of, matches, token_hash

KEY = b"k" * 32
INV = "e4d64ef8-071b-4c3d-a849-b4c5d6e7f809"
EXPIRES = "2025-12-03T03:01:01.300000+00:00"


def test_a_token_is_derived_again_identically_and_depends_on_key_id_and_expiry() -> None:
    token = derive_token(KEY, INV, EXPIRES)
    assert token == derive_token(KEY, INV, EXPIRES)
    assert token.startswith(f"{INV}.")
    assert token != derive_token(b"x" * 32, INV, EXPIRES)
    assert token != derive_token(KEY, str(uuid.uuid4()), EXPIRES)
    assert token != derive_token(KEY, INV, "2025-12-04T03:01:01.300000+00:00")
    assert invitation_id_of(token) == uuid.UUID(INV)


def test_only_the_hash_matches_and_nothing_else_parses() -> None:
    token = derive_token(KEY, INV, EXPIRES)
    recorded = token_hash(token)
    assert len(recorded) == 64 and token not in recorded
    assert matches(token, recorded)
    assert not matches(token + "x", recorded)
    assert not matches(token, None)
    for bad in ("", "abc", f"{INV}.short", f"{INV.upper()}.{'A' * 43}", f"not-a-uuid.{'A' * 43}"):
        assert invitation_id_of(bad) is None


NOW = datetime(2025, 12, 1, tzinfo=UTC)


def state(
    token: str, status: str = "sent", expires: datetime = NOW + timedelta(days=1)
) -> InvitationState:
    return InvitationState(
        invitation_id=uuid.UUID(INV),
        organization_id=uuid.uuid4(),
        email="a@x.org",
        role="admin",
        status=status,
        token_hash=token_hash(token),
        expires_at=expires,
    )


def test_verdicts() -> None:
    token = derive_token(KEY, INV, EXPIRES)
    assert verdict(token, state(token), NOW) is Outcome.VALID
    assert verdict(token, state(token, "pending"), NOW) is Outcome.VALID
    assert verdict(token, None, NOW) is Outcome.UNKNOWN
    assert verdict(token, state("another"), NOW) is Outcome.UNKNOWN
    assert verdict(token, state(token, "accepted"), NOW) is Outcome.ALREADY_ACCEPTED
    assert verdict(token, state(token, "revoked"), NOW) is Outcome.REVOKED
    assert verdict(token, state(token, expires=NOW), NOW) is Outcome.EXPIRED
    legacy = InvitationState(uuid.UUID(INV), uuid.uuid4(), "a@x.org", "admin", "sent", None, NOW)
    assert verdict(token, legacy, NOW - timedelta(days=1)) is Outcome.UNKNOWN
