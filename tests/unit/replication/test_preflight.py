"""The reader's preflight judged without a server: replication.preflight.problems is what
both `pipeline reader`/`run` (the first problem, raised) and `pipeline check` (all of them)
say about the same facts."""

from __future__ import annotations

from dataclasses import replace

import pytest

from replication.errors import (
    PublicationError,
    ReplicationPrivilegeError,
    SlotMismatchError,
    WalLevelError,
)
from replication.preflight import ServerFacts, problems

READY = ServerFacts(
    wal_level="logical",
    can_replicate=True,
    user="pipeline_reader",
    migrated=True,
    publication_exists=True,
    publication_covers=True,
    slot_plugin="pgoutput",
    slot_same_database=True,
)


def judge(facts: ServerFacts, **kwargs: bool) -> list[str]:
    return [type(p).__name__ for p in problems(facts, "pipeline_pub", "pipeline_slot", **kwargs)]


def test_a_ready_server_has_no_problem() -> None:
    assert problems(READY, "pipeline_pub", "pipeline_slot") == []
    assert problems(replace(READY, slot_plugin=None, slot_same_database=None), "p", "s") == []


@pytest.mark.parametrize(
    ("change", "error", "says", "hint"),
    [
        (
            {"wal_level": "replica"},
            WalLevelError,
            "wal_level is 'replica'",
            "set wal_level = logical",
        ),
        (
            {"can_replicate": False},
            ReplicationPrivilegeError,
            "role 'pipeline_reader' lacks the REPLICATION attribute",
            "ALTER ROLE pipeline_reader WITH REPLICATION",
        ),
        ({"migrated": False}, PublicationError, "domain_events does not exist", "pipeline migrate"),
        (
            {"publication_exists": False, "publication_covers": False},
            PublicationError,
            "publication 'pipeline_pub' does not exist",
            "CREATE PUBLICATION pipeline_pub FOR TABLE domain_events",
        ),
        (
            {"publication_covers": False},
            PublicationError,
            "does not cover domain_events",
            "ALTER PUBLICATION pipeline_pub ADD TABLE domain_events",
        ),
        (
            {"slot_plugin": "wal2json"},
            SlotMismatchError,
            "exists with plugin 'wal2json' on this database",
            "pg_drop_replication_slot('pipeline_slot')",
        ),
        (
            {"slot_same_database": False},
            SlotMismatchError,
            "on another database",
            "PIPELINE_SLOT_NAME",
        ),
    ],
)
def test_each_problem_names_itself_and_the_fix(
    change: dict[str, object], error: type[Exception], says: str, hint: str
) -> None:
    (found,) = problems(replace(READY, **change), "pipeline_pub", "pipeline_slot")  # type: ignore[arg-type]
    assert isinstance(found, error)
    assert says in str(found)
    assert hint in found.hint


def test_every_problem_is_listed_in_the_order_the_reader_meets_them() -> None:
    broken = replace(
        READY,
        wal_level="minimal",
        can_replicate=False,
        publication_covers=False,
        slot_plugin="test_decoding",
    )
    assert judge(broken) == [
        "WalLevelError",
        "ReplicationPrivilegeError",
        "PublicationError",
        "SlotMismatchError",
    ]


def test_a_missing_publication_is_no_problem_where_the_reader_creates_it() -> None:
    missing = replace(READY, publication_exists=False, publication_covers=False)
    assert judge(missing) == ["PublicationError"]
    assert judge(missing, creates_publication=True) == []
    # ... but not where the reader would stop before creating it.
    assert judge(replace(missing, wal_level="replica"), creates_publication=True) == [
        "WalLevelError",
        "PublicationError",
    ]
