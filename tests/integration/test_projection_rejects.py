"""A row no projection can fold, inside a batch (pipeline/agents/projecting.py).

The batch goes to PostgreSQL in one transaction without a savepoint; when a row cannot be
folded the whole transaction is rolled back and the batch is folded again row by row, the
bad row dead-lettered. Checked against a real database: the good rows are in the table
once each (the first attempt's writes were undone, not kept beside the second's), the bad
one is dead-lettered once, the checkpoint covers the whole batch, and the happy path sends
no SAVEPOINT (libpq's own trace of the connection).
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import TupleRow

from pipeline.agents import effects
from pipeline.agents.checkpoints import Checkpoint
from pipeline.agents.errors import RecordRejected
from pipeline.agents.projecting import Projector
from pipeline.agents.runtime import Record
from pipeline.projections.event_row import ProjectionError
from replication.lsn import LSN, Position

pytestmark = pytest.mark.integration

TOPIC = "domain-events"


async def apply_probe(
    conn: psycopg.AsyncConnection[TupleRow], rows: list[dict[str, object]]
) -> int:
    """Writes each row before it looks at the next: a bad row comes after writes."""
    for row in rows:
        await conn.execute(
            "INSERT INTO fold_probe (id, n) VALUES (%s, 1) "
            "ON CONFLICT (id) DO UPDATE SET n = fold_probe.n + 1",
            (row["id"],),
        )
        if row["event_type"] == "bad":
            raise ProjectionError(f"event {row['id']}: cannot be folded")
    return len(rows)


class Rejects:
    def __init__(self) -> None:
        self.rejected: list[tuple[Record, RecordRejected]] = []

    async def reject(self, record: Record, rejection: RecordRejected) -> bool:
        self.rejected.append((record, rejection))
        return True


def batch(kinds: list[str]) -> list[tuple[Record, dict[str, object]]]:
    return [
        (
            Record(TOPIC, 0, 100 + n, b"k", b"{}", ()),
            {"id": str(uuid.uuid4()), "event_type": kind},
        )
        for n, kind in enumerate(kinds)
    ]


def projector(dsn: str, rejects: Rejects) -> Projector:
    return Projector(
        consumer="probe",
        db=effects.Database(dsn, "projection"),
        projections=[apply_probe],
        validate=None,
        claim_checks=None,  # type: ignore[arg-type]  # not reached: rows are given
        dead_letters=rejects,  # type: ignore[arg-type]
    )


def table(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        return dict(conn.execute("SELECT id, n FROM fold_probe").fetchall())


def checkpoint(dsn: str) -> tuple[int, str] | None:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT kafka_offset, commit_lsn::text FROM pipeline_checkpoints "
            "WHERE consumer = 'probe' AND topic = %s AND kafka_partition = 0",
            (TOPIC,),
        ).fetchone()
    return (row[0], row[1]) if row else None


@pytest.fixture
def probe_db(fresh_db: str) -> str:
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE fold_probe (id text PRIMARY KEY, n int NOT NULL)")
    return fresh_db


async def test_a_bad_row_is_dead_lettered_and_the_rest_written_once(probe_db: str) -> None:
    rejects = Rejects()
    rows = batch(["good", "good", "bad", "good"])
    mark = Checkpoint(TOPIC, 0, 104, Position(LSN(0x5_0000_0000), 3))
    proj = projector(probe_db, rejects)
    try:
        applied = await proj._apply(rows, [mark])
    finally:
        await proj._projection_db.close()

    good = {str(row["id"]) for _, row in rows if row["event_type"] == "good"}
    assert table(probe_db) == dict.fromkeys(good, 1)  # once each: the first try undone
    assert [(r.offset, j.kind) for r, j in rejects.rejected] == [(102, "projection")]
    assert applied == {"probe": 3}
    assert checkpoint(probe_db) == (104, "5/0")


async def test_a_clean_batch_is_one_transaction_without_a_savepoint(probe_db: str) -> None:
    proj = projector(probe_db, Rejects())
    conn = await proj._projection_db.connection()
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "libpq.trace"
        with trace.open("w") as out:
            conn.pgconn.trace(out.fileno())
            try:
                mark = Checkpoint(TOPIC, 0, 3, Position(LSN(0x6_0000_0000), 0))
                assert await proj._apply(batch(["good", "good"]), [mark]) == {"probe": 2}
            finally:
                conn.pgconn.untrace()
                await proj._projection_db.close()
            out.flush()
            os.fsync(out.fileno())
        sent = trace.read_text(errors="replace")
    assert "BEGIN" in sent and "COMMIT" in sent and "fold_probe" in sent  # the trace works
    assert "SAVEPOINT" not in sent
    assert len(table(probe_db)) == 2
    assert checkpoint(probe_db) == (3, "6/0")
