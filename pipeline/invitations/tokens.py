"""Invitation tokens: derived with an HMAC, never stored; only their hash is recorded.

A token is ``{invitation_id}.{mac}``, the MAC being HMAC-SHA256 under the invitation key
(``PIPELINE_INVITATION_KEY``, Secret ``pipeline-secrets``) over the invitation's id and
expiry. The worker can therefore derive the same token again for a retried email without
keeping it anywhere; ``user.invited``, the invitations projection and Temporal's history
hold only :func:`token_hash` of it. The accept page needs no key: it looks the invitation
up by the id in the token and compares hashes in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid

MIN_KEY_BYTES = 32
_CONTEXT = b"pipeline.invitation.v1"
# 32 bytes of MAC in unpadded URL-safe base64.
_MAC_CHARS = 43


def derive_token(key: bytes, invitation_id: str, expires_at: str) -> str:
    """The token of the invitation ``invitation_id`` expiring at ``expires_at``."""
    message = b"\x00".join((_CONTEXT, invitation_id.encode(), expires_at.encode()))
    mac = hmac.new(key, message, hashlib.sha256).digest()
    return f"{invitation_id}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def token_hash(token: str) -> str:
    """What may be recorded about a token: its SHA-256, lower-case hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def invitation_id_of(token: str) -> uuid.UUID | None:
    """The invitation a well-formed token names, or None for anything else."""
    head, dot, mac = token.partition(".")
    if not dot or len(mac) != _MAC_CHARS or len(head) != 36:
        return None
    try:
        parsed = uuid.UUID(head)
    except ValueError:
        return None
    return parsed if str(parsed) == head else None


def matches(token: str, stored_hash: str | None) -> bool:
    """Whether ``token`` hashes to ``stored_hash``, compared in constant time."""
    if stored_hash is None:
        return False
    return hmac.compare_digest(token_hash(token).encode(), stored_hash.encode())
