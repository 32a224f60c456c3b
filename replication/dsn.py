"""Recognising a connection pooler from a DSN or from its refusal (pure).

Only what is certain from the text: a provider's pooler host name, ``pgbouncer=true``, a
pooler's refusal. A pooler behind an ordinary name is found by asking the server.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

# A provider's documented pooler endpoint (Supabase's Supavisor), a pooler by its name
# alone. Any other host or port may be a direct server (a host named `odyssey-db`, a
# PostgreSQL on 6432): `pipeline check` asks the server itself (pipeline/pooler.py).
KNOWN_POOLER_HOST = re.compile(r"(^|\.)pooler\.supabase\.com$", re.I)
# What poolers answer to a replication connection.
POOLER_REFUSALS = re.compile(
    r"unsupported startup parameter|pgbouncer|supavisor|no such database: |pooler", re.I
)
DIRECT_HOST_HINT = (
    "Logical replication (and LISTEN) do not work through a pooler: use the database's "
    "DIRECT host and port (e.g. db.<project>.supabase.co:5432 instead of "
    "<region>.pooler.supabase.com:6543)"
)


def pooler_problem(dsn: str) -> str | None:
    """Why dsn looks like a connection pooler, or None when it looks direct."""
    try:
        parts = urlsplit(dsn)
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname or ""
    reason = None
    if KNOWN_POOLER_HOST.search(host):
        reason = f"host {host!r} is Supabase's connection pooler (port {port})"
    elif parse_qs(parts.query).get("pgbouncer", [""])[0].lower() in {"1", "true"}:
        reason = "the DSN says pgbouncer=true"
    return None if reason is None else f"{reason}. {DIRECT_HOST_HINT}"


def looks_like_pooler_refusal(message: str) -> bool:
    """True when a server's error text is what a pooler says to a replication connection."""
    return bool(POOLER_REFUSALS.search(message))
