"""What the reader needs of the server, read in one query and judged in one place.

``pipeline reader`` / ``pipeline run`` (:func:`replication.slot.preflight`) raise the first
problem before streaming, after creating a missing publication; ``pipeline check``
(:mod:`pipeline.check`) lists every problem without changing anything. Both read
:class:`ServerFacts` with :func:`read_facts` and judge them with :func:`problems`, which
is pure: each problem is the :class:`~replication.errors.ReaderSetupError` the reader
raises, with the hint the operator acts on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from replication.errors import (
    PublicationError,
    ReaderSetupError,
    ReplicationPrivilegeError,
    SlotMismatchError,
    WalLevelError,
)

TABLE = "domain_events"

FACTS_SQL = (
    "SELECT current_setting('wal_level'), "
    "coalesce((SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user), "
    "false), current_user, "
    "to_regclass('public.domain_events') IS NOT NULL, "
    "EXISTS (SELECT 1 FROM pg_publication WHERE pubname = %(pub)s), "
    "EXISTS (SELECT 1 FROM pg_publication_tables WHERE pubname = %(pub)s "
    "        AND tablename = 'domain_events'), "
    "(SELECT plugin FROM pg_replication_slots WHERE slot_name = %(slot)s), "
    "(SELECT database = current_database() FROM pg_replication_slots "
    " WHERE slot_name = %(slot)s)"
)


@dataclass(frozen=True, slots=True)
class ServerFacts:
    """What the server says about the reader's needs (``slot_*`` None: no such slot)."""

    wal_level: str
    can_replicate: bool
    user: str
    migrated: bool
    publication_exists: bool
    publication_covers: bool
    slot_plugin: str | None
    slot_same_database: bool | None


async def read_facts(
    conn: psycopg.AsyncConnection[Any], publication: str, slot: str
) -> ServerFacts:
    """Read :class:`ServerFacts` over ``conn`` (any role may run the query)."""
    row = await (await conn.execute(FACTS_SQL, {"pub": publication, "slot": slot})).fetchone()
    assert row is not None  # a SELECT without FROM returns one row
    wal, replicate, user, migrated, pub_exists, covers, plugin, same_db = row
    return ServerFacts(
        wal_level=str(wal),
        can_replicate=bool(replicate),
        user=str(user),
        migrated=bool(migrated),
        publication_exists=bool(pub_exists),
        publication_covers=bool(covers),
        slot_plugin=plugin if isinstance(plugin, str) else None,
        slot_same_database=same_db if isinstance(same_db, bool) else None,
    )


def problems(
    facts: ServerFacts, publication: str, slot: str, *, creates_publication: bool = False
) -> list[ReaderSetupError]:
    """Everything that keeps the reader from streaming, in the order it would meet them.

    The reader creates a missing publication before it judges
    (:func:`replication.slot.preflight`); ``creates_publication`` says a missing one is
    not a problem because it will be created (``pipeline check``'s view of the reader).
    """
    found: list[ReaderSetupError] = []
    if facts.wal_level != "logical":
        found.append(
            WalLevelError(
                f"wal_level is {facts.wal_level!r}, logical decoding needs 'logical'",
                "set wal_level = logical (ALTER SYSTEM SET wal_level = logical) "
                "and restart PostgreSQL",
            )
        )
    if not facts.can_replicate:
        found.append(
            ReplicationPrivilegeError(
                f"role {facts.user!r} lacks the REPLICATION attribute",
                f"ALTER ROLE {facts.user} WITH REPLICATION",
            )
        )
    if not facts.migrated:
        found.append(PublicationError(f"{TABLE} does not exist", "run `pipeline migrate`"))
    elif not facts.publication_exists:
        if creates_publication and facts.wal_level == "logical" and facts.can_replicate:
            pass  # the reader creates it
        else:
            found.append(
                PublicationError(
                    f"publication {publication!r} does not exist",
                    f"CREATE PUBLICATION {publication} FOR TABLE {TABLE} (run `pipeline migrate`)",
                )
            )
    elif not facts.publication_covers:
        found.append(
            PublicationError(
                f"publication {publication!r} does not cover {TABLE}",
                f"ALTER PUBLICATION {publication} ADD TABLE {TABLE}",
            )
        )
    if facts.slot_plugin is not None and (
        facts.slot_plugin != "pgoutput" or not facts.slot_same_database
    ):
        where = "this" if facts.slot_same_database else "another"
        found.append(
            SlotMismatchError(
                f"slot {slot!r} exists with plugin {facts.slot_plugin!r} on {where} database",
                f"drop it (SELECT pg_drop_replication_slot('{slot}')) or set "
                "PIPELINE_SLOT_NAME to another name",
            )
        )
    return found
