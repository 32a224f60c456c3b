"""A `pipeline worker` SIGKILLed in the middle of an activity: another worker retries it
after the activity's heartbeat timeout, not after its start-to-close timeout (issue 14).

The doomed worker is the real CLI in its own process; its invitation email hangs in an
SMTP server that takes the message and never answers. It is SIGKILLed while the email
is in flight, and a second worker (in the test process, an SMTP server that answers)
serves the same task queue. Both have a start-to-close timeout of 10 minutes: on code
without heartbeats the retry would come only after it, far beyond this test's bound.
Checked from outside: the workflow's result, Temporal's history (the email step's last
attempt started after a heartbeat timeout of the first), and the event store (one
``invitation.email.sent``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import TimeoutType
from temporalio.client import Client

from pipeline import events as ev
from pipeline.bootstrap.inputs import Admin
from pipeline.bootstrap.worker import build_worker
from pipeline.dev.layout import DevLayout
from tests.integration.bootstrap_harness import (
    FAST,
    Mailbox,
    initiate,
    make_settings,
    smtp_server,
    start,
    stored_events,
)
from tests.integration.pipeline_process import INVITATION_KEY, pipeline_cli
from tests.integration.ports import free_port

pytestmark = pytest.mark.integration

LONG_TIMEOUT_MS = 600_000  # start-to-close: the old code's retry would wait this long
HANG = 180.0  # bounds a hang only


class HangingMailbox(Mailbox):
    """Takes a message and never answers; ``receiving`` is set when one arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.receiving = threading.Event()

    async def handle_DATA(self, server, session, envelope):
        self.receiving.set()
        await asyncio.sleep(3600)
        return "250 OK"


async def _in_flight(mailbox: HangingMailbox, worker: subprocess.Popen[bytes]) -> bool:
    """Whether the worker's email reached the SMTP server (False: the worker exited)."""
    for _ in range(int(HANG * 2)):
        if mailbox.receiving.is_set():
            return True
        if worker.poll() is not None:
            return False
        await asyncio.sleep(0.5)
    return False


def _start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [pipeline_cli(), "worker"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


async def test_a_killed_workers_activity_is_retried_after_its_heartbeat_timeout(
    temporal_client: Client, fresh_db: str, dev_layout: DevLayout, tmp_path: Path
) -> None:
    hanging, answering = HangingMailbox(), Mailbox()
    hang_port, ok_port = free_port(), free_port()
    settings = make_settings(
        fresh_db,
        ok_port,
        temporal_address=dev_layout.temporal_address,
        retry=replace(FAST, start_to_close_timeout_ms=LONG_TIMEOUT_MS),
        invitation_key=INVITATION_KEY.encode(),  # both workers sign with one key
    )
    request = initiate(fresh_db, admins=[Admin("alice@example.org", "admin")])
    env = {
        **os.environ,
        "PIPELINE_DATABASE_URL": fresh_db,
        "PIPELINE_TEMPORAL_ADDRESS": dev_layout.temporal_address,
        "PIPELINE_TEMPORAL_TASK_QUEUE": settings.task_queue,
        "PIPELINE_BASE_DOMAIN": settings.base_domain,
        "PIPELINE_EMAIL_PROVIDER": "smtp",
        "PIPELINE_SMTP_HOST": "127.0.0.1",
        "PIPELINE_SMTP_PORT": str(hang_port),
        "PIPELINE_SMTP_TIMEOUT_S": "3600",
        "PIPELINE_BOOTSTRAP_ACTIVITY_TIMEOUT_MS": str(LONG_TIMEOUT_MS),
        "PIPELINE_BOOTSTRAP_RETRY_INITIAL_MS": "100",
        "PIPELINE_INVITATION_KEY": INVITATION_KEY,
    }
    log = tmp_path / f"worker-{uuid.uuid4().hex[:6]}.log"
    with smtp_server(hanging, hang_port), smtp_server(answering, ok_port):
        doomed = _start_worker(env, log)
        handle = await start(temporal_client, settings, request)
        try:
            assert await _in_flight(hanging, doomed), log.read_text()
            os.killpg(doomed.pid, signal.SIGKILL)
            assert await asyncio.to_thread(doomed.wait, 60) == -signal.SIGKILL
            async with build_worker(temporal_client, settings):
                result = await asyncio.wait_for(handle.result(), HANG)
        finally:
            if doomed.poll() is None:
                os.killpg(doomed.pid, signal.SIGKILL)
                doomed.wait()
    assert result.status == "completed", result
    assert len(answering.messages) == 1
    types = [t for t, _ in stored_events(fresh_db, request.org_id)]
    assert types.count(ev.INVITATION_EMAIL_SENT) == 1
    assert types[-1] == ev.QUEUE_COMPLETED
    # Temporal's own record: the email's attempt that completed followed a heartbeat
    # timeout of the attempt the killed worker held.
    history = await handle.fetch_history()
    scheduled: dict[int, str] = {}
    email_starts = []
    for event in history.events:
        if event.HasField("activity_task_scheduled_event_attributes"):
            attrs = event.activity_task_scheduled_event_attributes
            scheduled[event.event_id] = attrs.activity_type.name
        elif event.HasField("activity_task_started_event_attributes"):
            started = event.activity_task_started_event_attributes
            if scheduled[started.scheduled_event_id] == "bootstrap.send_invitation_email":
                email_starts.append(started)
    assert len(email_starts) == 1
    assert email_starts[0].attempt >= 2
    timeout = email_starts[0].last_failure.timeout_failure_info
    assert timeout.timeout_type == TimeoutType.TIMEOUT_TYPE_HEARTBEAT, email_starts[0]
