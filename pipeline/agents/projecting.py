"""The projection agent's fold: a batch of records into every projection, with the
partition checkpoints, in one transaction.

Every record is decoded straight into the row the appliers take (a claim check's payload
read from the store first); an undecodable or invalid record, or one no projection can
fold, goes to the dead-letter topic and the rest of the batch is kept. Only this agent
dead-letters (it sees every record), so a bad record is dead-lettered once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

import psycopg
from psycopg.rows import TupleRow

from pipeline import metrics
from pipeline.agents import effects
from pipeline.agents.checkpoints import Checkpoint, Consumed, checkpoints_for, write_checkpoints
from pipeline.agents.claimcheck import ClaimChecks
from pipeline.agents.dlq import DeadLetterer
from pipeline.agents.errors import RecordRejected
from pipeline.agents.headers import header_map, is_claim_check, parse_position
from pipeline.agents.records import Validator, projection_row
from pipeline.projections.event_row import ProjectionError
from pipeline.projections.registry import ProjectionApplier, applier_name
from replication import killpoint
from replication.lsn import Position

if TYPE_CHECKING:
    from pipeline.agents.runtime import Record

log = logging.getLogger(__name__)

# Records decoded between two yields to the event loop (about 5-10 ms of CPU).
YIELD_EVERY: Final = 128


def _position_or_none(record: Record) -> Position | None:
    try:
        return parse_position(header_map(record.headers))
    except RecordRejected:
        return None


class Projector:
    """The projection agent's handler (see the module's docstring)."""

    def __init__(
        self,
        *,
        consumer: str,
        db: effects.Database,
        projections: Sequence[ProjectionApplier],
        validate: Validator | None,
        claim_checks: ClaimChecks,
        dead_letters: DeadLetterer,
    ) -> None:
        self.consumer = consumer
        self._projection_db = db
        self._projections = list(projections)
        self._validate = validate
        self._claim_checks = claim_checks
        self.dead_letters = dead_letters

    async def _reject(self, record: Record, rejection: RecordRejected) -> None:
        await self.dead_letters.reject(record, rejection)

    async def project(self, records: Sequence[Record]) -> None:
        """Fold a batch into every projection and checkpoint it, in one transaction."""
        good: list[tuple[Record, dict[str, object]]] = []
        consumed: list[Consumed] = []
        validate = self._validate
        for n, record in enumerate(records, 1):
            if n % YIELD_EVERY == 0:
                # A large batch decodes for tens of milliseconds: let the handlers' starts,
                # which share this event loop, go on between slices of it.
                await asyncio.sleep(0)
            position: Position | None
            try:
                # The event's row for the appliers, as DomainEvent.as_row() would give it,
                # without building the DomainEvent; a claim check's payload read first,
                # every other record decoded without a coroutine of its own.
                if is_claim_check(record.headers):
                    row, position = await self._claim_checks.projection_row(record, validate)
                else:
                    row, position = projection_row(
                        record.key, record.value, record.headers, validate
                    )
            except RecordRejected as exc:
                await self._reject(record, exc)
                position = _position_or_none(record)
            else:
                good.append((record, row))
            consumed.append(Consumed(record.topic, record.partition, record.offset, position))
        checkpoints = checkpoints_for(consumed)
        applied = await effects.with_retries(
            "projection",
            f"apply a batch of {len(records)} ending at {records[-1].where}",
            lambda: self._apply(good, checkpoints),
        )
        killpoint.reached("agents.after_projection_commit")
        for name, count in applied.items():
            metrics.EVENTS_APPLIED.labels(name).inc(count)
        if checkpoints:
            log.debug(
                "applied %s; checkpoints %s",
                applied,
                ", ".join(
                    f"{c.topic}[{c.partition}]@{c.next_offset} lsn={c.position}"
                    for c in checkpoints
                ),
            )

    async def _apply(
        self, good: list[tuple[Record, dict[str, object]]], checkpoints: list[Checkpoint]
    ) -> dict[str, int]:
        conn = await self._projection_db.connection()
        try:
            # The batch and its checkpoints in one transaction, without a savepoint: a row
            # that cannot be folded rolls the whole of it back (nothing else was in it),
            # two round trips fewer per batch than a savepoint around the rows.
            async with conn.transaction():
                applied = await self._apply_rows(conn, [row for _, row in good])
                await write_checkpoints(conn, self.consumer, checkpoints)
            return applied
        except ProjectionError:
            pass
        # Some row cannot be folded: find it row by row, dead-letter it, keep the rest.
        applied = {}
        async with conn.transaction():
            for record, row in good:
                try:
                    async with conn.transaction():  # a savepoint: undone alone on a bad row
                        counts = await self._apply_rows(conn, [row])
                except ProjectionError as exc:
                    await self._reject(record, RecordRejected("projection", str(exc)))
                    continue
                for name, count in counts.items():
                    applied[name] = applied.get(name, 0) + count
            await write_checkpoints(conn, self.consumer, checkpoints)
        return applied

    async def _apply_rows(
        self, conn: psycopg.AsyncConnection[TupleRow], rows: list[dict[str, object]]
    ) -> dict[str, int]:
        return {applier_name(a): await a(conn, rows) for a in self._projections}
