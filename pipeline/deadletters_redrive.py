"""``pipeline dead-letters redrive``: dead-lettered records through the agents again.

Each open dead letter of an agent is rebuilt as the record it was (topic, partition,
offset, key, value, headers, all kept in ``pipeline_dead_letters``) and handed to the
enqueue, starter and projection handlers, as ``pipeline replay`` does. A record that
passes now is marked ``redriven_at``. One rejected again is dead-lettered under the
same key, so nothing is added to the dead-letter topic, except the copy that never
reached it (``published = false``), which is sent now. A row the reader could not
convert is not an agent's record: it stays in ``domain_events``, and redrive says so.
"""

from __future__ import annotations

from typing import Final

import psycopg

from pipeline.agents.runtime import Record
from pipeline.config import Settings
from pipeline.deadletters import producer
from pipeline.replay import build_runtime
from replication.deadletter_store import decode_headers

_OPEN: Final = (
    "SELECT dead_letter_key, source, event_id::text, original_topic, original_partition, "
    "original_offset, record_key, record_value, record_headers FROM pipeline_dead_letters "
    "WHERE redriven_at IS NULL AND (%s::text IS NULL OR dead_letter_key = %s) "
    "ORDER BY created_at, dead_letter_key"
)
_DONE: Final = "UPDATE pipeline_dead_letters SET redriven_at = now() WHERE dead_letter_key = %s"


async def redrive(settings: Settings, key: str | None) -> list[tuple[str, str]]:
    """Redrive the open dead letter ``key`` (every open one when None); per key, what
    happened."""
    outcomes: list[tuple[str, str]] = []
    async with await psycopg.AsyncConnection.connect(
        settings.database_url.get_secret_value(), autocommit=True
    ) as conn:
        rows = await (await conn.execute(_OPEN, (key, key))).fetchall()
        if not rows:
            return outcomes
        kafka = producer(settings)
        await kafka.start()
        runtime = build_runtime(settings, kafka)
        try:
            for dead_key, source, event_id, topic, partition, offset, rkey, value, headers in rows:
                if source == "reader" or topic is None:
                    outcomes.append(
                        (
                            dead_key,
                            f"not redriven: the reader could not convert this row; it stays "
                            f"in domain_events (id {event_id}), fix or compensate it there",
                        )
                    )
                    continue
                record = Record(
                    topic=topic,
                    partition=partition,
                    offset=offset,
                    key=bytes(rkey) if rkey is not None else None,
                    value=bytes(value) if value is not None else None,
                    headers=tuple(decode_headers(headers)),
                )
                before = len(runtime.dead_letters.rejected)
                await runtime.enqueue(record)
                await runtime.start(record)
                await runtime.project([record])
                again = runtime.dead_letters.rejected[before:]
                if again:
                    outcomes.append((dead_key, f"still rejected: {'; '.join(again)}"))
                    continue
                await conn.execute(_DONE, (dead_key,))
                outcomes.append((dead_key, "redriven: the agents took it"))
        finally:
            await runtime.close()
            await kafka.stop()
    return outcomes
