"""The designs this project replaces, as workers that start the same workflow.

    python -m bench.baselines listen   # LISTEN/NOTIFY: trigger + pg_notify, direct connection
    python -m bench.baselines poll     # polling every second (the reference's fallback)

Both read PIPELINE_DATABASE_URL, PIPELINE_TEMPORAL_ADDRESS and
PIPELINE_TEMPORAL_TASK_QUEUE, and handle a job like the reference worker did: emit
``workflow.queue.claimed``, start ``org-bootstrap-{org_id}`` (same call as the pipeline),
emit ``organization.bootstrap.workflow_started``. Jobs are handled concurrently (up to
``CONCURRENCY``), as the reference's Node event handlers were. The trigger is installed
by the benchmark only in the baseline's own fresh database (:func:`install_notify`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
from psycopg.rows import TupleRow
from temporalio.client import Client

from bench.starts import bootstrap_input, start_bootstrap
from pipeline import eventloop
from pipeline import events as ev
from pipeline.eventstore import NewEvent, emit, idempotency_key

log = logging.getLogger(__name__)

CHANNEL = "bench_bootstrap"
CONCURRENCY = 16
POOL_SIZE = 4
POLL_INTERVAL_S = 1.0

NOTIFY_SQL = f"""
CREATE FUNCTION bench_notify_bootstrap() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{CHANNEL}', json_build_object(
        'id', NEW.id, 'stream_id', NEW.stream_id, 'event_data', NEW.event_data)::text);
    RETURN NULL;
END;
$$;
CREATE TRIGGER bench_notify_bootstrap AFTER INSERT ON domain_events
    FOR EACH ROW WHEN (NEW.event_type = '{ev.BOOTSTRAP_INITIATED}')
    EXECUTE FUNCTION bench_notify_bootstrap();
"""


def install_notify(dsn: str) -> None:
    """The LISTEN/NOTIFY design's trigger, in a baseline database only."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(NOTIFY_SQL)


@dataclass(frozen=True, slots=True)
class Job:
    """An initiated event a baseline worker must turn into a workflow start."""

    job_id: str
    org_id: str
    event_data: dict[str, object]


class Handler:
    """Claims a job, starts its workflow and records the start, like the reference worker."""

    def __init__(self, dsn: str, client: Client, task_queue: str, source: str) -> None:
        self.dsn = dsn
        self.client = client
        self.task_queue = task_queue
        self.source = source
        self.worker_id = f"{source}-{os.getpid()}"
        self.pool: asyncio.Queue[psycopg.AsyncConnection[TupleRow]] = asyncio.Queue()
        self.limit = asyncio.Semaphore(CONCURRENCY)
        self.tasks: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        for _ in range(POOL_SIZE):
            self.pool.put_nowait(await psycopg.AsyncConnection.connect(self.dsn, autocommit=True))

    async def _emit(self, event: NewEvent) -> uuid.UUID:
        conn = await self.pool.get()
        try:
            return await emit(conn, event)
        finally:
            self.pool.put_nowait(conn)

    def submit(self, job: Job) -> None:
        task = asyncio.create_task(self._handle_logged(job))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _handle_logged(self, job: Job) -> None:
        try:
            await self._handle(job)
        except Exception:
            log.exception("job_id=%s org_id=%s failed", job.job_id, job.org_id)

    async def _handle(self, job: Job) -> None:
        async with self.limit:
            stream = uuid.UUID(job.org_id)
            workflow_id = ev.workflow_id_for(job.org_id)
            claimed = await self._emit(
                NewEvent(
                    stream_id=stream,
                    stream_type=ev.STREAM_TYPE_ORGANIZATION,
                    event_type=ev.QUEUE_CLAIMED,
                    event_data={
                        "job_id": job.job_id,
                        "workflow_id": workflow_id,
                        "worker_id": self.worker_id,
                    },
                    idempotency_key=idempotency_key(job.job_id, ev.QUEUE_CLAIMED),
                    event_metadata={"causation_id": job.job_id, "source": self.source},
                )
            )
            run_id = await start_bootstrap(
                self.client,
                self.task_queue,
                job.org_id,
                bootstrap_input(job.org_id, job.job_id, job.event_data),
            )
            await self._emit(
                NewEvent(
                    stream_id=stream,
                    stream_type=ev.STREAM_TYPE_ORGANIZATION,
                    event_type=ev.BOOTSTRAP_WORKFLOW_STARTED,
                    event_data={"job_id": job.job_id, "workflow_id": workflow_id, "run_id": run_id},
                    idempotency_key=idempotency_key(job.job_id, ev.BOOTSTRAP_WORKFLOW_STARTED),
                    event_metadata={"causation_id": str(claimed), "source": self.source},
                )
            )


async def listen(handler: Handler, stop: asyncio.Event) -> None:
    """LISTEN on a direct connection; every notification is a job."""
    async with await psycopg.AsyncConnection.connect(handler.dsn, autocommit=True) as conn:
        await conn.execute(f"LISTEN {CHANNEL}")
        print("listening", flush=True)
        gen = conn.notifies()
        stopper = asyncio.create_task(stop.wait())
        while not stop.is_set():
            nxt = asyncio.ensure_future(anext(gen))
            done, _ = await asyncio.wait({nxt, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if nxt not in done:
                nxt.cancel()
                break
            payload = json.loads(nxt.result().payload)
            handler.submit(
                Job(str(payload["id"]), str(payload["stream_id"]), dict(payload["event_data"]))
            )


_POLL_SQL = (
    "SELECT id::text, stream_id::text, event_data, created_at FROM domain_events "
    "WHERE event_type = %s AND created_at > %s ORDER BY created_at"
)


async def poll(handler: Handler, stop: asyncio.Event) -> None:
    """Every POLL_INTERVAL_S, select initiated events newer than the last seen (minus a
    margin for transactions that committed out of created_at order)."""
    seen: set[str] = set()
    since = datetime.fromtimestamp(0).astimezone()
    margin = timedelta(seconds=5)
    async with await psycopg.AsyncConnection.connect(handler.dsn, autocommit=True) as conn:
        print("polling", flush=True)
        while not stop.is_set():
            cur = await conn.execute(_POLL_SQL, (ev.BOOTSTRAP_INITIATED, since - margin))
            for job_id, org_id, data, created_at in await cur.fetchall():
                since = max(since, created_at)
                if job_id not in seen:
                    seen.add(job_id)
                    handler.submit(Job(job_id, org_id, dict(data)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL_INTERVAL_S)


MODES: dict[str, Callable[[Handler, asyncio.Event], Awaitable[None]]] = {
    "listen": listen,
    "poll": poll,
}


async def main(mode: str) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    client = await Client.connect(os.environ["PIPELINE_TEMPORAL_ADDRESS"])
    handler = Handler(
        os.environ["PIPELINE_DATABASE_URL"],
        client,
        os.environ["PIPELINE_TEMPORAL_TASK_QUEUE"],
        f"bench.{mode}",
    )
    await handler.open()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await MODES[mode](handler, stop)
    if handler.tasks:
        await asyncio.gather(*list(handler.tasks), return_exceptions=True)


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in MODES:
        sys.exit(f"usage: python -m bench.baselines {{{'|'.join(MODES)}}}")
    eventloop.run(main(sys.argv[1]))
