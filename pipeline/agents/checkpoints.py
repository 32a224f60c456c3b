"""Per-partition checkpoints of the projection (table ``pipeline_checkpoints``).

Written in the same transaction as the projection rows of the batch they cover, so the
checkpoint says exactly what is applied (DESIGN.md invariant 3). ``kafka_offset`` is the
next offset to read; (commit_lsn, idx) the position of the last event of the batch on
that partition. A checkpoint never moves back: a replay re-reads older positions, which
change nothing, so the stored one stays.

Nothing in ``pipeline run`` reads a checkpoint back: Faust resumes from the consumer
group's committed offsets. The table is the record of what the projection applied, read
by ``bench/drain.py`` (its end point) and ``tests/integration/test_agents.py``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import psycopg
from psycopg.rows import TupleRow

from replication.lsn import Position


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """How far one partition of one topic is applied."""

    topic: str
    partition: int
    next_offset: int
    position: Position


@dataclass(frozen=True, slots=True)
class Consumed:
    """One consumed record of a batch: where it was and the position it carried, if any."""

    topic: str
    partition: int
    offset: int
    position: Position | None


def checkpoints_for(batch: Iterable[Consumed]) -> list[Checkpoint]:
    """One checkpoint per partition of a batch (pure).

    A partition whose records all lacked a readable position (all dead-lettered for bad
    headers) gets none: its Kafka offset commit still moves on, and the next batch with a
    position records it.
    """
    offsets: dict[tuple[str, int], int] = {}
    positions: dict[tuple[str, int], Position] = {}
    for item in batch:
        tp = (item.topic, item.partition)
        offsets[tp] = max(offsets.get(tp, -1), item.offset + 1)
        if item.position is not None and (tp not in positions or item.position > positions[tp]):
            positions[tp] = item.position
    return [
        Checkpoint(topic, partition, offsets[(topic, partition)], positions[(topic, partition)])
        for topic, partition in sorted(positions)
    ]


_UPSERT: Final = (
    "INSERT INTO pipeline_checkpoints AS c "
    "(consumer, topic, kafka_partition, kafka_offset, commit_lsn, idx, updated_at) "
    "VALUES (%s, %s, %s, %s, %s::pg_lsn, %s, now()) "
    "ON CONFLICT (consumer, topic, kafka_partition) DO UPDATE SET "
    "kafka_offset = EXCLUDED.kafka_offset, commit_lsn = EXCLUDED.commit_lsn, "
    "idx = EXCLUDED.idx, updated_at = EXCLUDED.updated_at "
    "WHERE (c.commit_lsn, c.idx) <= (EXCLUDED.commit_lsn, EXCLUDED.idx)"
)


async def write_checkpoints(
    conn: psycopg.AsyncConnection[TupleRow], consumer: str, checkpoints: Iterable[Checkpoint]
) -> None:
    """Upsert checkpoints in the caller's transaction."""
    params = [
        (consumer, c.topic, c.partition, c.next_offset, str(c.position.commit_lsn), c.position.idx)
        for c in checkpoints
    ]
    if params:
        async with conn.cursor() as cur:
            await cur.executemany(_UPSERT, params)
