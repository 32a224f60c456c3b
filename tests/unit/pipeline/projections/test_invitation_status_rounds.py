"""invitations.status_rounds: one statement per round keeps each invitation's status
changes in commit order, and no round names an invitation twice (pure)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pipeline.projections.invitations import InvitationUpsert, status_rounds
from replication.lsn import LSN, Position

ORG = uuid.uuid4()
A, B, C = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()


def _up(invitation: uuid.UUID, idx: int, status: str) -> InvitationUpsert:
    return InvitationUpsert(
        invitation, ORG, Position(LSN(0x16B3748), idx), datetime.now(UTC), status=status
    )


def test_distinct_invitations_are_one_round() -> None:
    run = [_up(A, 0, "sent"), _up(B, 1, "sent"), _up(C, 2, "revoked")]
    assert status_rounds(run) == [run]


def test_repeated_invitations_split_in_order() -> None:
    run = [
        _up(A, 0, "sent"),
        _up(B, 1, "sent"),
        _up(A, 2, "accepted"),
        _up(A, 3, "revoked"),
        _up(C, 4, "sent"),
        _up(B, 5, "revoked"),
    ]
    rounds = status_rounds(run)
    assert [[(u.invitation_id, u.position.idx) for u in r] for r in rounds] == [
        [(A, 0), (B, 1), (C, 4)],
        [(A, 2), (B, 5)],
        [(A, 3)],
    ]
    for r in rounds:
        assert len({u.invitation_id for u in r}) == len(r)
    # Flattened per invitation, each one's changes are in their original order.
    for inv in (A, B, C):
        mine = [u.position.idx for r in rounds for u in r if u.invitation_id == inv]
        assert mine == sorted(mine)
    assert sum(len(r) for r in rounds) == len(run)


def test_no_changes_no_rounds() -> None:
    assert status_rounds([]) == []
