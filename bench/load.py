"""Load generators: open-loop steady load through ``api.emit_domain_event``, and backlogs.

Steady load: ``organization.bootstrap.initiated`` events, one transaction each (as the
API would emit them), plus "other" events (``invitation.email.sent`` on random
organization streams, valid under the contract, ignored by the enqueue and starter
agents) emitted ``other_batch`` to a transaction. Each schedule is open-loop: event k is
due at ``t0 + k / rate`` whatever happened to event k-1, and a few connections share the
schedule so one slow commit does not delay the next; the report says how far behind
schedule the generator fell.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field

import psycopg
from psycopg.rows import TupleRow

from pipeline import events as ev
from pipeline.eventstore import NewEvent, emit, emit_sync

OTHER_EVENT_TYPE = ev.INVITATION_EMAIL_SENT

_OTHER_SQL = (
    "SELECT api.emit_domain_event(gen_random_uuid(), 'organization', %s, "
    "jsonb_build_object('invitation_id', gen_random_uuid(), "
    "'email', 'user' || g || '@bench.test'), '{\"source\": \"bench\"}'::jsonb, NULL) "
    "FROM generate_series(1, %s) AS g"
)


@dataclass(frozen=True, slots=True)
class Bootstrap:
    """An initiated event the generator committed."""

    org_id: str
    event_id: str
    event_data: dict[str, object]


AfterCommit = Callable[[Bootstrap], Coroutine[object, object, None]]


@dataclass(slots=True)
class LoadReport:
    """What the generator did."""

    seconds: float = 0.0
    bootstraps: list[Bootstrap] = field(default_factory=list)
    others: int = 0
    max_behind_ms: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "seconds": self.seconds,
            "bootstraps": float(len(self.bootstraps)),
            "others": float(self.others),
            "bootstrap_rate": len(self.bootstraps) / self.seconds if self.seconds else 0.0,
            "other_rate": self.others / self.seconds if self.seconds else 0.0,
            "max_behind_ms": self.max_behind_ms,
        }


def bootstrap_event(source: str = "bench") -> NewEvent:
    """A new organization's ``organization.bootstrap.initiated``."""
    org = uuid.uuid4()
    return NewEvent(
        stream_id=org,
        stream_type=ev.STREAM_TYPE_ORGANIZATION,
        event_type=ev.BOOTSTRAP_INITIATED,
        event_data={
            "name": f"Bench Organization {org.hex[:8]}",
            "subdomain": f"b{org.hex[:12]}",
            "admins": [{"email": f"admin@{org.hex[:12]}.bench.test", "role": "organization_admin"}],
        },
        event_metadata={"source": source},
        idempotency_key=f"{source}:{org}",
    )


async def emit_bootstrap(conn: psycopg.AsyncConnection[TupleRow], source: str) -> Bootstrap:
    event = bootstrap_event(source)
    event_id = await emit(conn, event)
    return Bootstrap(str(event.stream_id), str(event_id), dict(event.event_data))


async def _connections(dsn: str, n: int) -> list[psycopg.AsyncConnection[TupleRow]]:
    return [await psycopg.AsyncConnection.connect(dsn, autocommit=True) for _ in range(n)]


async def steady_load(
    dsn: str,
    *,
    bootstrap_rate: float,
    other_rate: float,
    seconds: float,
    other_batch: int = 10,
    connections: int = 3,
    after_commit: AfterCommit | None = None,
) -> LoadReport:
    """Run both schedules for ``seconds``; ``after_commit`` runs (as a task) per bootstrap."""
    report = LoadReport()
    tasks: set[asyncio.Task[None]] = set()
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.05

    async def schedule(
        rate: float,
        conns: list[psycopg.AsyncConnection[TupleRow]],
        action: Callable[[psycopg.AsyncConnection[TupleRow]], Coroutine[object, object, None]],
    ) -> None:
        counter = itertools.count()

        async def lane(conn: psycopg.AsyncConnection[TupleRow]) -> None:
            for k in counter:
                offset = k / rate
                if offset >= seconds:
                    return
                delay = t0 + offset - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    report.max_behind_ms = max(report.max_behind_ms, -delay * 1000)
                await action(conn)

        await asyncio.gather(*(lane(c) for c in conns))

    async def one_bootstrap(conn: psycopg.AsyncConnection[TupleRow]) -> None:
        done = await emit_bootstrap(conn, "bench")
        report.bootstraps.append(done)
        if after_commit is not None:
            task = asyncio.create_task(after_commit(done))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    async def other_batch_tx(conn: psycopg.AsyncConnection[TupleRow]) -> None:
        await conn.execute(_OTHER_SQL, (OTHER_EVENT_TYPE, other_batch))
        report.others += other_batch

    boot_conns = await _connections(dsn, connections)
    other_conns = await _connections(dsn, connections)
    started = time.monotonic()
    try:
        jobs = []
        if bootstrap_rate > 0:
            jobs.append(schedule(bootstrap_rate, boot_conns, one_bootstrap))
        if other_rate > 0:
            jobs.append(schedule(other_rate / other_batch, other_conns, other_batch_tx))
        await asyncio.gather(*jobs)
        report.seconds = time.monotonic() - started
        if tasks:
            await asyncio.gather(*list(tasks))
    finally:
        for conn in (*boot_conns, *other_conns):
            await conn.close()
    return report


def bootstrap_backlog(dsn: str, count: int, source: str = "bench-backlog") -> list[Bootstrap]:
    """Commit ``count`` initiated events, one transaction each."""
    out: list[Bootstrap] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        for _ in range(count):
            event = bootstrap_event(source)
            event_id = emit_sync(conn, event)
            out.append(Bootstrap(str(event.stream_id), str(event_id), dict(event.event_data)))
    return out
