"""``make demo``: the main job end to end on the local services.

Brings up PostgreSQL, Kafka and Temporal (no Docker), migrates, emits one
``organization.bootstrap.initiated`` and prints the event chain with each event's time
relative to the first, like the table in the reference document; then stops what it
started.
"""

from __future__ import annotations

import os
import sys
import time
import uuid

import psycopg

from pipeline import events
from pipeline.dev import services
from pipeline.dev.layout import load_layout
from pipeline.eventstore import NewEvent, emit_sync
from pipeline.migrate import migrate


def print_chain(dsn: str, org_id: uuid.UUID) -> int:
    """Print the org's events with times relative to the first; returns how many."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT stream_version, event_type, created_at FROM domain_events "
            "WHERE stream_id = %s ORDER BY stream_version",
            (org_id,),
        ).fetchall()
    if not rows:
        return 0
    first = rows[0][2]
    print(f"\n{'#':>3}  {'event':45} {'+ms':>9}")
    for version, event_type, created_at in rows:
        delta_ms = (created_at - first).total_seconds() * 1000
        print(f"{version:>3}  {event_type:45} {delta_ms:>9.1f}")
    return len(rows)


def main() -> int:
    layout = load_layout()
    t0 = time.monotonic()
    print("starting local services (PostgreSQL, Kafka, Temporal)...", flush=True)
    started = services.up(layout)
    try:
        env = {**layout.env(), **os.environ}
        dsn = env["PIPELINE_DATABASE_URL"]
        applied = migrate(dsn)
        print(f"migrations applied: {', '.join(applied) or 'none (up to date)'}")
        org_id = uuid.uuid4()
        with psycopg.connect(dsn, autocommit=True) as conn:
            emit_sync(
                conn,
                NewEvent(
                    stream_id=org_id,
                    stream_type=events.STREAM_TYPE_ORGANIZATION,
                    event_type=events.BOOTSTRAP_INITIATED,
                    event_data={
                        "name": "Demo Organization",
                        "subdomain": f"demo-{org_id.hex[:8]}",
                        "admins": [{"email": "admin@demo.test", "role": "organization_admin"}],
                    },
                    event_metadata={"source": "demo"},
                    idempotency_key=f"demo:{org_id}",
                ),
            )
        print(f"emitted {events.BOOTSTRAP_INITIATED} for organization {org_id}")
        print_chain(dsn, org_id)
    finally:
        if started:
            services.down(layout, started)
            print(f"\nstopped: {', '.join(started)}")
    print(f"demo wall time: {time.monotonic() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
