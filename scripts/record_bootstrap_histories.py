"""Record the bootstrap workflow's histories that tests/unit/pipeline/bootstrap replays.

    .venv/bin/python -m scripts.record_bootstrap_histories v3_begin

Runs today's workflow three times on the dev services (``pipeline dev up``), with a
worker of this checkout, the input carrying the job's queue event ids as the starter
passes them: the happy path (two admins), a permanent email refusal (compensation) and an
invalid subdomain (validation fails). Writes ``{prefix}_{case}.json`` into
tests/unit/pipeline/bootstrap/histories/. Record a new set whenever a change of the
workflow's commands goes behind a ``workflow.patched``: the replay test then keeps every
earlier set replaying on the code that follows.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import uuid
from pathlib import Path

from temporalio.client import Client

from pipeline.bootstrap.inputs import BootstrapInput
from pipeline.dev import services
from pipeline.dev.layout import load_layout
from tests.integration.bootstrap_harness import (
    Mailbox,
    initiate,
    make_settings,
    run_bootstrap,
    smtp_server,
)
from tests.integration.conftest import create_database, drop_database
from tests.integration.ports import free_port

HISTORIES = Path(__file__).resolve().parent.parent / "tests/unit/pipeline/bootstrap/histories"


def _with_queue_events(request: BootstrapInput) -> BootstrapInput:
    """The input as the starter passes it: with the ids of the job's pending and claimed
    events (only their ids reach the workflow: the start's key and causation)."""
    return dataclasses.replace(
        request, pending_event_id=str(uuid.uuid4()), claimed_event_id=str(uuid.uuid4())
    )


async def _record(prefix: str) -> None:
    layout = load_layout()
    client = await Client.connect(layout.temporal_address, namespace="default")
    name = f"record_{uuid.uuid4().hex[:12]}"
    dsn = create_database(layout, name)
    try:
        cases = {
            "happy": (None, frozenset[str]()),
            "email_refused": (None, frozenset({"bob@example.org"})),
            "invalid_subdomain": ("Not_A_Label", frozenset[str]()),
        }
        for case, (subdomain, refuse) in cases.items():
            port = free_port()
            settings = make_settings(dsn, port)
            request = _with_queue_events(initiate(dsn, subdomain=subdomain))
            with smtp_server(Mailbox(refuse=refuse), port):
                result, handle = await run_bootstrap(client, settings, request)
            history = await handle.fetch_history()
            path = HISTORIES / f"{prefix}_{case}.json"
            path.write_text(history.to_json())
            print(f"{case}: {result.status} (stage {result.stage}) -> {path}")
    finally:
        drop_database(layout, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prefix", help="the set's name, e.g. v3_begin")
    prefix = parser.parse_args().prefix
    services.up(load_layout())
    asyncio.run(_record(prefix))


if __name__ == "__main__":
    main()
