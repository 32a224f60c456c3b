"""The agents' dead-letter path: once per (position, reason), and bounded.

A rejected record is first recorded in ``pipeline_dead_letters``
(:mod:`replication.deadletter_store`); only a record not dead-lettered before is sent to
the dead-letter topic, so redeliveries, restarts and ``pipeline replay`` add nothing.

The send is bounded: a few attempts, each with a timeout. A send that fails for good (a
record the dead-letter topic refuses, a topic that does not exist, Kafka unreachable for
longer than the attempts) is logged as an error, left ``published = false`` in the table
(``pipeline status``, ``pipeline dead-letters list``) and reported by ``/readyz``; the
record is then passed over like any other dead letter. Blocking the partition instead
would stop every record behind it for one that will not be processed either way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Final

from aiokafka.errors import KafkaError

from pipeline import health, metrics
from pipeline.agents import effects
from pipeline.agents.deadletter import dead_letter_headers
from pipeline.agents.errors import RecordRejected
from pipeline.agents.headers import header_map, parse_position
from replication.deadletter_store import DeadLetter, claim, mark
from replication.lsn import Position

if TYPE_CHECKING:
    from pipeline.agents.runtime import Record

log = logging.getLogger(__name__)

SEND_ATTEMPTS: Final = 3
SEND_TIMEOUT: Final = 10.0  # seconds per attempt

Send = Callable[["Record", list[tuple[str, bytes]]], Awaitable[None]]

# Dead letters of this process whose Kafka copy could not be sent (readiness reports them).
_unpublished: set[str] = set()


def _unpublished_check() -> str | None:
    if not _unpublished:
        return None
    return (
        f"{len(_unpublished)} dead letter(s) could not be sent to the dead-letter topic "
        "(kept in pipeline_dead_letters; see `pipeline dead-letters list`)"
    )


health.register(_unpublished_check)


def _position(headers: Sequence[tuple[str, bytes]]) -> Position | None:
    try:
        return parse_position(header_map(headers))
    except RecordRejected:
        return None


def is_permanent(exc: BaseException) -> bool:
    """A send error that another attempt cannot fix (too large, invalid, unauthorized)."""
    if isinstance(exc, KafkaError):
        return not exc.retriable
    return isinstance(exc, ValueError | TypeError)


class DeadLetterer:
    """Sends each rejected record to the dead-letter topic once (see the module docstring)."""

    def __init__(
        self,
        db: effects.Database,
        send: Send,
        *,
        source: str = "projection",
        attempts: int = SEND_ATTEMPTS,
        timeout: float = SEND_TIMEOUT,
    ) -> None:
        self._db = db
        self._send = send
        self._source = source
        self._attempts = attempts
        self._timeout = timeout
        # The rejections of this process, in order (``pipeline dead-letters redrive``).
        self.rejected: list[str] = []

    async def close(self) -> None:
        """Close the table's connection."""
        await self._db.close()

    async def reject(self, record: Record, rejection: RecordRejected) -> bool:
        """Dead-letter record; False when it was dead-lettered for this reason before."""
        self.rejected.append(str(rejection))
        position = _position(record.headers)
        letter = DeadLetter(
            position=position,
            reason_kind=rejection.kind,
            reason=str(rejection),
            source=self._source,
            where=record.where,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            headers=record.headers,
        )
        key = letter.dead_letter_key
        send_it = await effects.with_retries(
            self._source,
            f"record dead letter {key} of {record.where}",
            lambda: self._claim(letter),
        )
        if not send_it:
            log.info("%s was dead-lettered before (key=%s): not sent again", record.where, key)
            return False
        headers = dead_letter_headers(
            record.headers,
            rejection,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
        )
        headers.append(("dead_letter_key", key.encode()))
        error = await self._send_bounded(record, headers, key)
        await effects.with_retries(
            self._source,
            f"mark dead letter {key}",
            lambda: self._mark(key, error),
        )
        metrics.EVENTS_DEAD_LETTERED.labels(rejection.kind).inc()
        if error is None:
            _unpublished.discard(key)
            log.warning("dead-lettered %s key=%s: %s", record.where, key, rejection)
        else:
            _unpublished.add(key)
            log.error(
                "dead letter %s key=%s could NOT be sent to the dead-letter topic: %s; it is "
                "kept in pipeline_dead_letters (published=false) and the partition goes on. "
                "Fix the topic, then `pipeline dead-letters redrive %s`",
                record.where,
                key,
                error,
                key,
            )
        return True

    async def _claim(self, letter: DeadLetter) -> bool:
        return await claim(await self._db.connection(), letter)

    async def _mark(self, key: str, error: str | None) -> None:
        await mark(await self._db.connection(), key, published=error is None, error=error)

    async def _send_bounded(
        self, record: Record, headers: list[tuple[str, bytes]], key: str
    ) -> str | None:
        """Send with at most ``attempts`` tries of ``timeout`` each; the error, or None."""
        error = "not attempted"
        for attempt in range(1, self._attempts + 1):
            try:
                await asyncio.wait_for(self._send(record, headers), self._timeout)
                return None
            except asyncio.CancelledError:
                raise
            except TimeoutError:
                error = f"no answer from Kafka within {self._timeout:.0f}s"
            except Exception as exc:  # every send error ends in the bounded failure below
                error = f"{type(exc).__name__}: {exc}"
                if is_permanent(exc):
                    break
            log.warning(
                "dead letter key=%s: send attempt %d/%d failed: %s",
                key,
                attempt,
                self._attempts,
                error,
            )
            if attempt < self._attempts:
                await asyncio.sleep(min(2.0 * attempt, 5.0))
        return error
