"""Driving a chaos run: the steady emitter, the fault injector and the supervisor.

The emitter commits ``organization.bootstrap.initiated`` with plain SQL through both
``api.emit_domain_event`` signatures on the plan's open-loop schedule, retrying across a
PostgreSQL restart with the same idempotency key / event id (so a retry adds nothing).
The injector runs the plan's faults one after the other. The supervisor restarts a
process that exited by itself, as Kubernetes would, and counts it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
import uuid
from dataclasses import dataclass, field

import psycopg
from psycopg.rows import TupleRow
from psycopg.types.json import Jsonb

from bench import chaos_procs as procs
from bench.chaos_checks import FaultWindow
from bench.chaos_plan import (
    KAFKA_RESTART,
    LEADER_FREEZE,
    POSTGRES_RESTART,
    RUN_KILL,
    TEMPORAL_OUTAGE,
    WORKER_KILL,
    Emission,
    PlannedFault,
)
from pipeline import events as ev
from pipeline.dev.layout import DevLayout

log = logging.getLogger("chaos")

EMIT_DEADLINE = 300.0  # one emission may wait this long for PostgreSQL to come back
MIN_GAP = 3.0  # seconds between the end of a fault and the start of the next

_STREAM_SQL = (
    "SELECT api.emit_domain_event(p_stream_id => %s, p_stream_type => 'organization', "
    "p_event_type => %s, p_event_data => %s, p_event_metadata => %s, "
    "p_idempotency_key => %s)"
)
_AGGREGATE_SQL = (
    "SELECT api.emit_domain_event(p_event_id => %s, p_event_type => %s, "
    "p_aggregate_type => 'organization', p_aggregate_id => %s, p_event_data => %s, "
    "p_event_metadata => %s)"
)


@dataclass(frozen=True, slots=True)
class Emitted:
    org_id: str
    signature: str
    admins: int


def _data(org: uuid.UUID, admins: int) -> Jsonb:
    return Jsonb(
        {
            "name": f"Chaos Org {org.hex[:8]}",
            "subdomain": f"chaos-{org.hex[:16]}",
            "admins": [
                {"email": f"admin{i}-{org.hex[:8]}@chaos.test", "role": "organization_admin"}
                for i in range(admins)
            ],
        }
    )


async def emit_all(dsn: str, emissions: tuple[Emission, ...], t0: float) -> list[Emitted]:
    """Commit every emission at ``t0 + at`` (loop time), one transaction each."""
    loop = asyncio.get_running_loop()
    out: list[Emitted] = []
    conn: psycopg.AsyncConnection[TupleRow] | None = None
    meta = Jsonb({"source": "chaos"})
    try:
        for emission in emissions:
            delay = t0 + emission.at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            org = uuid.uuid4()
            if emission.signature == "stream":
                sql: str = _STREAM_SQL
                params: tuple[object, ...] = (
                    org,
                    ev.BOOTSTRAP_INITIATED,
                    _data(org, emission.admins),
                    meta,
                    f"chaos:{org}",
                )
            else:
                sql = _AGGREGATE_SQL
                params = (
                    uuid.uuid4(),
                    ev.BOOTSTRAP_INITIATED,
                    org,
                    _data(org, emission.admins),
                    meta,
                )
            deadline = loop.time() + EMIT_DEADLINE
            while True:
                try:
                    if conn is None or conn.closed:
                        conn = await psycopg.AsyncConnection.connect(
                            dsn, autocommit=True, connect_timeout=5
                        )
                    await conn.execute(sql, params)
                    break
                except psycopg.OperationalError as exc:
                    if loop.time() > deadline:
                        raise RuntimeError(
                            f"could not emit bootstrap {emission.index} for {EMIT_DEADLINE:.0f}s: {exc}"
                        ) from exc
                    if conn is not None:
                        await conn.close()
                    conn = None
                    await asyncio.sleep(0.5)
            out.append(Emitted(str(org), emission.signature, emission.admins))
    finally:
        if conn is not None:
            await conn.close()
    return out


@dataclass
class Injected:
    window: FaultWindow
    planned: PlannedFault
    detail: str


@dataclass
class Cluster:
    """The harness's own processes and the local services' layout."""

    layout: DevLayout
    worker: procs.Managed
    runs: list[procs.Managed]
    injected: list[Injected] = field(default_factory=list)

    def managed(self) -> list[procs.Managed]:
        return [self.worker, *self.runs]

    async def reader(self, within: float = 15.0) -> procs.Managed | None:
        """The replica that says it holds the slot (None if none says so in time)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for run in self.runs:
                if run.alive() and await asyncio.to_thread(run.reads_slot):
                    return run
            await asyncio.sleep(0.5)
        return None

    async def inject(self, fault: PlannedFault) -> tuple[float, float, str]:
        """Inject one fault and restore the component; (start, end, detail) wall clock."""
        start = time.time()
        if fault.kind == RUN_KILL:
            run = self.runs[fault.target % len(self.runs)]
            was_reader = await asyncio.to_thread(run.reads_slot)
            start = time.time()
            await run.kill()
            await asyncio.sleep(fault.hold)
            run.start()
            detail = f"{run.name} ({'the reader' if was_reader else 'not the reader'}), restarted after {fault.hold:.1f} s"
        elif fault.kind == WORKER_KILL:
            await self.worker.kill()
            self.worker.start()
            detail = "worker restarted at once"
        elif fault.kind == KAFKA_RESTART:
            await procs.restart_kafka(self.layout)
            detail = "broker SIGKILLed, restarted, healthy again"
        elif fault.kind == POSTGRES_RESTART:
            await procs.restart_postgres(self.layout)
            detail = "pg_ctl restart -m immediate, accepting connections again"
        elif fault.kind == TEMPORAL_OUTAGE:
            await procs.kill_temporal(self.layout)
            await asyncio.sleep(fault.hold)
            await procs.start_temporal(self.layout)
            detail = f"dev server down {fault.hold:.0f} s, healthy again"
        elif fault.kind == LEADER_FREEZE:
            frozen = await self.reader()
            found = frozen is not None
            frozen = frozen or self.runs[0]
            start = time.time()
            frozen.down = True
            frozen.signal(signal.SIGSTOP)
            await asyncio.sleep(fault.hold)
            frozen.signal(signal.SIGCONT)
            frozen.down = False
            detail = (
                f"{frozen.name} {'(held the slot)' if found else '(no replica said it held the slot)'} "
                f"frozen {fault.hold:.1f} s"
            )
        else:
            raise ValueError(f"unknown fault kind {fault.kind}")
        return start, time.time(), detail

    async def inject_all(self, faults: tuple[PlannedFault, ...], t0: float) -> None:
        loop = asyncio.get_running_loop()
        last_end = 0.0
        for fault in faults:
            delay = max(t0 + fault.at - loop.time(), last_end + MIN_GAP - loop.time())
            if delay > 0:
                await asyncio.sleep(delay)
            log.info("fault %d: %s", fault.index, fault.kind)
            start, end, detail = await self.inject(fault)
            last_end = loop.time()
            log.info(
                "fault %d: %s done in %.1f s: %s", fault.index, fault.kind, end - start, detail
            )
            self.injected.append(
                Injected(FaultWindow(fault.index, fault.kind, start, end), fault, detail)
            )

    async def supervise(self) -> None:
        """Restart what exited by itself (counted), until cancelled."""
        while True:
            for m in self.managed():
                if not m.down and m.proc is not None and m.proc.poll() is not None:
                    m.unexpected_exits.append(m.proc.returncode)
                    log.warning(
                        "%s exited by itself (%s): restarting it", m.name, m.proc.returncode
                    )
                    m.start()
            await asyncio.sleep(1.0)
