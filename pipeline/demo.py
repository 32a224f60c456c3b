"""``make demo``: the main job end to end on the local services.

Brings up PostgreSQL, Kafka and Temporal (no Docker), migrates, starts ``pipeline run``
(reader + agents) and ``pipeline worker`` as real processes, emits one
``organization.bootstrap.initiated`` and prints the event chain with each event's time
relative to the first (like the table in the reference document); then stops everything
it started.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

import psycopg

from pipeline import events, trace
from pipeline.dev import services
from pipeline.dev.layout import DevLayout, load_layout
from pipeline.eventstore import NewEvent, emit_sync
from pipeline.migrate import migrate

TERMINAL = {events.QUEUE_COMPLETED, events.QUEUE_FAILED}


def _pipeline_cli() -> str:
    beside = Path(sys.executable).parent / "pipeline"
    return str(beside) if beside.exists() else "pipeline"


def _start(
    name: str, args: list[str], env: Mapping[str, str], layout: DevLayout
) -> subprocess.Popen[bytes]:
    log_path = layout.log_dir / f"demo-{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("ab")
    print(f"  starting `pipeline {' '.join(args)}` (log: {log_path})", flush=True)
    return subprocess.Popen(
        [_pipeline_cli(), *args],
        env=dict(env),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_for_reader(
    dsn: str, slot: str, procs: list[subprocess.Popen[bytes]], timeout: float = 120
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}: see its log")
        with psycopg.connect(dsn) as conn:
            row = conn.execute(
                "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)
            ).fetchone()
        if row is not None and row[0]:
            return
        time.sleep(0.5)
    raise RuntimeError("the reader did not take the replication slot in time")


def _wait_for_chain(dsn: str, org_id: uuid.UUID, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline:
        with psycopg.connect(dsn) as conn:
            types = [
                r[0]
                for r in conn.execute(
                    "SELECT event_type FROM domain_events WHERE stream_id = %s ORDER BY stream_version",
                    (org_id,),
                ).fetchall()
            ]
        for event_type in types[seen:]:
            print(f"  … {event_type}", flush=True)
        seen = len(types)
        done = TERMINAL.intersection(types)
        if done:
            return done.pop()
        time.sleep(0.2)
    raise RuntimeError(f"the bootstrap did not finish within {timeout:.0f}s")


def print_chain(dsn: str, org_id: uuid.UUID) -> int:
    """Print the org's events with times relative to ``initiated`` (``pipeline trace``'s
    rendering) and its projections; returns how many events."""
    chain = asyncio.run(trace.read(dsn, org_id))
    if not chain.events:
        return 0
    print()
    for line in trace.render(chain):
        print(line)
    return len(chain.events)


def main() -> int:
    layout = load_layout()
    t0 = time.monotonic()
    print("starting local services (PostgreSQL, Kafka, Temporal)...", flush=True)
    started = services.up(layout)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        env = {**os.environ, **layout.env()}
        env.setdefault("PIPELINE_DATA_DIR", str(layout.state_dir / "faust"))
        env.setdefault("PIPELINE_EMAIL_OUTBOX_DIR", str(layout.state_dir / "outbox"))
        dsn = env["PIPELINE_DATABASE_URL"]
        applied = migrate(dsn)
        print(f"migrations applied: {', '.join(applied) or 'none (up to date)'}")
        procs.append(_start("run", ["run"], env, layout))
        procs.append(_start("worker", ["worker"], env, layout))
        _wait_for_reader(dsn, env.get("PIPELINE_SLOT_NAME", "pipeline"), procs)
        org_id = uuid.uuid4()
        subdomain = f"demo-{org_id.hex[:8]}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            emit_sync(
                conn,
                NewEvent(
                    stream_id=org_id,
                    stream_type=events.STREAM_TYPE_ORGANIZATION,
                    event_type=events.BOOTSTRAP_INITIATED,
                    event_data={
                        "name": "Demo Organization",
                        "subdomain": subdomain,
                        "admins": [{"email": "admin@demo.test", "role": "organization_admin"}],
                    },
                    event_metadata={"source": "demo"},
                    idempotency_key=f"demo:{org_id}",
                ),
            )
        print(f"emitted {events.BOOTSTRAP_INITIATED} for organization {org_id} ({subdomain})")
        outcome = _wait_for_chain(dsn, org_id)
        time.sleep(1.0)  # let the projection agent fold the last events
        print_chain(dsn, org_id)
        print(f"\noutcome: {outcome}")
    finally:
        for proc in procs:
            _stop(proc)
        if started:
            services.down(layout, started)
            print(f"stopped: {', '.join(started)}")
    print(f"demo wall time: {time.monotonic() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
