"""Preflight checks, publication and slot management for the reader: the setup of a
session (:func:`create_slot` also sends the new slot's initial snapshot).

Every refusal is turned into an error with an operator hint before the reader streams:
a pooler, and what :mod:`replication.preflight` judges (``wal_level`` not logical, a role
without REPLICATION, a slot with the wrong plugin, a publication that does not cover
``domain_events``), which ``pipeline check`` reports the same way.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from replication.dsn import DIRECT_HOST_HINT, looks_like_pooler_refusal, pooler_problem
from replication.errors import (
    PoolerError,
    PublicationError,
    ReplicationPrivilegeError,
    WalLevelError,
)
from replication.lsn import LSN
from replication.ports import ReplicationStream
from replication.preflight import TABLE, problems, read_facts
from replication.snapshot import Send, copy_snapshot
from replication.wire import ReplicationWire

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SlotState:
    """What pg_replication_slots says of our slot (None fields when it does not exist)."""

    exists: bool
    active_pid: int | None = None
    confirmed_flush: LSN | None = None
    snapshot_done: bool = False


def check_dsn(dsn: str) -> None:
    """Refuse a pooler DSN before connecting."""
    problem = pooler_problem(dsn)
    if problem is not None:
        raise PoolerError(
            f"the database URL points at a connection pooler: {problem}", DIRECT_HOST_HINT
        )


def translate_connect_error(exc: psycopg.Error, dsn: str | None = None) -> Exception:
    """Map a refusal at connect time to the error an operator can act on."""
    text = str(exc)
    user = "<user>"
    if dsn is not None:
        with contextlib.suppress(psycopg.Error):
            user = str(conninfo_to_dict(dsn).get("user") or user)
    if looks_like_pooler_refusal(text):
        return PoolerError(
            f"the server refused a replication connection ({text.strip()})", DIRECT_HOST_HINT
        )
    if "replication role" in text or "permission denied to start WAL sender" in text:
        return ReplicationPrivilegeError(
            f"the role may not open a replication connection ({text.strip()})",
            f"ALTER ROLE {user} WITH REPLICATION (or use a role that has it)",
        )
    if "wal_level" in text:
        return WalLevelError(text.strip(), "set wal_level = logical and restart PostgreSQL")
    return exc


async def preflight(dsn: str, slot: str, publication: str) -> SlotState:
    """Check the server and our objects (:mod:`replication.preflight`), creating the
    publication if it is missing; raise the first problem, else the slot's state."""
    check_dsn(dsn)
    try:
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    except psycopg.Error as exc:
        raise translate_connect_error(exc) from exc
    async with conn:
        facts = await read_facts(conn, publication, slot)
        if (
            facts.wal_level == "logical"
            and facts.can_replicate
            and facts.migrated
            and not facts.publication_exists
        ):
            await _create_publication(conn, publication)
            facts = await read_facts(conn, publication, slot)
        found = problems(facts, publication, slot)
        if found:
            raise found[0]
        return await _slot_state(conn, slot)


async def _create_publication(conn: psycopg.AsyncConnection[tuple[object, ...]], name: str) -> None:
    log.warning("publication %s missing: creating it for %s", name, TABLE)
    try:
        await conn.execute(
            sql.SQL("CREATE PUBLICATION {} FOR TABLE {} WITH (publish = 'insert')").format(
                sql.Identifier(name), sql.Identifier(TABLE)
            )
        )
    except psycopg.Error as exc:
        raise PublicationError(
            f"publication {name!r} does not exist and could not be created: {exc}",
            f"CREATE PUBLICATION {name} FOR TABLE {TABLE} (run `pipeline migrate`)",
        ) from exc


async def _slot_state(conn: psycopg.AsyncConnection[tuple[object, ...]], slot: str) -> SlotState:
    row = await (
        await conn.execute(
            "SELECT active_pid, confirmed_flush_lsn::text "
            "FROM pg_replication_slots WHERE slot_name = %s",
            (slot,),
        )
    ).fetchone()
    if row is None:
        return SlotState(exists=False)
    active_pid, confirmed = row
    done = await (
        await conn.execute("SELECT 1 FROM pipeline_reader_snapshots WHERE slot_name = %s", (slot,))
    ).fetchone()
    return SlotState(
        exists=True,
        active_pid=active_pid if isinstance(active_pid, int) else None,
        confirmed_flush=LSN.parse(confirmed) if isinstance(confirmed, str) else None,
        snapshot_done=done is not None,
    )


async def drop_inactive_slot(dsn: str, slot: str) -> None:
    """Drop a slot left without its initial snapshot (it will be created again)."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            "WHERE slot_name = %s AND NOT active",
            (slot,),
        )


async def record_snapshot(dsn: str, slot: str, consistent_point: LSN, rows: int) -> None:
    """Remember that the slot's initial snapshot is entirely in Kafka."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO pipeline_reader_snapshots (slot_name, consistent_point, rows_copied) "
            "VALUES (%s, %s::pg_lsn, %s) ON CONFLICT (slot_name) DO UPDATE SET "
            "consistent_point = EXCLUDED.consistent_point, rows_copied = EXCLUDED.rows_copied, "
            "completed_at = now()",
            (slot, str(consistent_point), rows),
        )


def lock_key_text(slot: str) -> str:
    """The text whose ``hashtextextended`` is the reader's advisory lock key."""
    return f"pipeline.reader:{slot}"


async def connect_replication(
    dsn: str, application_name: str
) -> psycopg.AsyncConnection[tuple[object, ...]]:
    """Open the reader's replication connection (``replication=database``).

    Opened before anything else touches the database or Kafka: a pooler or a role without
    REPLICATION is refused here, before a lock, a publication or a topic exists.
    """
    check_dsn(dsn)
    try:
        return await psycopg.AsyncConnection.connect(
            dsn, autocommit=True, replication="database", application_name=application_name
        )
    except psycopg.Error as exc:
        raise translate_connect_error(exc, dsn) from exc


async def claim_reader_lock(wire: ReplicationWire, slot: str) -> int | None:
    """Take the session advisory lock that makes this process the slot's reader, on the
    replication connection itself; None when taken, else the holder's pid (if known).

    The slot alone does not exclude a second reader at every moment: PostgreSQL releases
    a slot right after CREATE_REPLICATION_SLOT, so while the creator copies the initial
    snapshot the slot looks inactive and unfinished, and a second reader would drop it.
    Taken on the replication connection (a ``replication=database`` walsender runs simple
    SQL), the lock lives exactly as long as the connection that streams the slot: it can
    never be left behind on a pooler's server connection, and the server drops it with
    the walsender when the process dies or is cut off.
    """
    key = lock_key_text(slot).replace("'", "''")
    rows = await wire.query(
        f"SELECT hashtextextended('{key}', 0), pg_try_advisory_lock(hashtextextended('{key}', 0))"
    )
    number, taken = rows[0]
    if taken == "t":
        return None
    holder = await wire.query(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
        f"AND ((classid::bigint << 32) | objid::bigint) = {int(number or 0)}"
    )
    return int(holder[0][0]) if holder and holder[0][0] is not None else None


async def create_slot(
    wire: ReplicationStream,
    dsn: str,
    slot: str,
    *,
    initial_snapshot: bool,
    send: Send,
    snapshot_sent: Callable[[], Awaitable[None]],
) -> tuple[LSN, int]:
    """Create the slot on the replication connection; with ``initial_snapshot``, send
    every row of its exported snapshot (``send``), then ``snapshot_sent()`` (which makes
    them durable in Kafka) and record it. The slot's consistent point and the rows sent."""
    mode = "export" if initial_snapshot else "nothing"
    rows = await wire.query(f"CREATE_REPLICATION_SLOT {slot} LOGICAL pgoutput (SNAPSHOT '{mode}')")
    consistent = LSN.parse(rows[0][1] or "0/0")
    log.info("created slot=%s at lsn=%s", slot, consistent)
    copied = 0
    if initial_snapshot and rows[0][2]:
        # The exported snapshot lives until the next command on this connection.
        copied = await copy_snapshot(dsn, rows[0][2], send)
        await snapshot_sent()
        log.info("slot=%s initial snapshot: %d rows in Kafka", slot, copied)
    await record_snapshot(dsn, slot, consistent, copied)
    return consistent, copied
