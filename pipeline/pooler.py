"""Is there a connection pooler between us and PostgreSQL? Ask the server (``pipeline check``).

A host name or a port proves nothing (a host may be called ``odyssey-db``, PostgreSQL may
listen on 6432, and PgBouncer >= 1.23 even forwards replication connections), so this
looks at what the server itself says, without changing anything:

* a backend that outlives its client's connection, or serves the next client, is pooled:
  PostgreSQL ends a backend when its client disconnects, a pooler keeps it for reuse;
* a pooler's refusal of a replication connection (``unsupported startup parameter``);
* a replication connection whose ``IDENTIFY_SYSTEM`` names another system than the plain
  connection's ``pg_control_system()``;
* for the report: the server's view of our address (``inet_client_port()``) against the
  socket's own, which differs behind any proxy (a pooler or a plain TCP proxy).

Blocking (psycopg's sync API); ``pipeline check`` runs it in a thread.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field

import psycopg

from replication.dsn import looks_like_pooler_refusal

BACKEND_EXIT_WAIT_S = 3.0


@dataclass(slots=True)
class PoolerFinding:
    """What the probe saw; ``pooled`` is True when any evidence says pooler."""

    evidence: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def pooled(self) -> bool:
        return bool(self.evidence)


def _local_port(conn: psycopg.Connection[tuple[object, ...]]) -> int | None:
    try:
        with socket.socket(fileno=os.dup(conn.fileno())) as sock:
            name = sock.getsockname()
    except OSError:
        return None
    return int(name[1]) if isinstance(name, tuple) else None  # a Unix socket has no port


def _system_identifier(conn: psycopg.Connection[tuple[object, ...]]) -> str | None:
    try:
        row = conn.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()
    except psycopg.Error:
        return None  # not allowed for this role: the comparison is skipped
    return str(row[0]) if row else None


def _backend_outlived(dsn: str, pid: int, timeout: int) -> tuple[bool, int]:
    """(pid's backend is still there after its client left, the next client's backend pid)."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=timeout) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        next_pid = int(row[0]) if row else -1
        if next_pid == pid:
            return True, next_pid
        deadline = time.monotonic() + BACKEND_EXIT_WAIT_S
        while time.monotonic() < deadline:
            alive = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)
            ).fetchone()
            if alive == (0,):
                return False, next_pid
            time.sleep(0.1)
    return True, next_pid


def _replication_system(dsn: str, timeout: int) -> tuple[str | None, str | None]:
    """(IDENTIFY_SYSTEM's systemid, the refusal's text) of a replication connection."""
    try:
        with psycopg.connect(
            dsn, autocommit=True, connect_timeout=timeout, replication="database"
        ) as conn:
            result = conn.pgconn.exec_(b"IDENTIFY_SYSTEM")
            value = result.get_value(0, 0) if result.ntuples else None
            return (value.decode() if value is not None else None), None
    except psycopg.Error as exc:
        return None, str(exc).strip()


def probe(dsn: str, timeout: int = 5) -> PoolerFinding:
    """Look for a pooler behind dsn; raises psycopg.Error when the server is unreachable."""
    finding = PoolerFinding()
    with psycopg.connect(dsn, autocommit=True, connect_timeout=timeout) as conn:
        row = conn.execute(
            "SELECT pg_backend_pid(), host(inet_server_addr()), inet_server_port(), "
            "inet_client_port()"
        ).fetchone()
        assert row is not None
        pid, server_addr, server_port, client_port = row
        local = _local_port(conn)
        system = _system_identifier(conn)
    if client_port is not None and local is not None and client_port != local:
        finding.notes.append(
            f"the server sees this connection from port {client_port}, this process "
            f"connected from port {local}: something relays it"
        )
    outlived, next_pid = _backend_outlived(dsn, int(pid), timeout)
    if outlived:
        how = "served the next connection" if next_pid == pid else "outlived its client"
        finding.evidence.append(
            f"backend pid {pid} (server {server_addr}:{server_port}) {how}: connections are pooled"
        )
    repl_system, refusal = _replication_system(dsn, timeout)
    if refusal is not None and looks_like_pooler_refusal(refusal):
        finding.evidence.append(f"a replication connection is refused: {refusal}")
    elif refusal is not None:
        finding.notes.append(f"replication connection failed: {refusal}")
    elif system is not None and repl_system is not None and system != repl_system:
        finding.evidence.append(
            f"the replication connection reaches system {repl_system}, the plain one "
            f"system {system}: they are different servers"
        )
    elif repl_system is not None:
        finding.notes.append(f"system {repl_system}")
    return finding
