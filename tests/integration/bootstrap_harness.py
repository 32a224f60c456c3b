"""The harness of the bootstrap workflow tests (test_bootstrap_workflow.py,
test_worker_kill.py): an SMTP server on a free loopback port (aiosmtpd), the worker's
settings with shortened retries, a bootstrap initiated with plain SQL and its workflow
started as the starter does, and reads of what it stored and how often each activity ran."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes, policy
from email.message import EmailMessage

import psycopg
from aiosmtpd.controller import Controller
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy

from pipeline import events as ev
from pipeline.bootstrap.inputs import Admin, BootstrapInput, BootstrapResult, RetryTuning
from pipeline.bootstrap.providers.dns import DnsProvider
from pipeline.bootstrap.settings import BootstrapSettings
from pipeline.bootstrap.worker import build_worker
from pipeline.bootstrap.workflows import OrganizationBootstrapWorkflow
from pipeline.contract import validate_event
from pipeline.eventstore import NewEvent, emit_sync

FAST = RetryTuning(
    initial_interval_ms=100,
    backoff_coefficient=1.5,
    maximum_interval_ms=400,
    provider_maximum_attempts=60,
    store_maximum_attempts=10,
    start_to_close_timeout_ms=15_000,
)
RESULT_TIMEOUT = 120.0
LOCAL_ACTIVITY_MARKER = "core_local_activity"


class Mailbox:
    """aiosmtpd handler keeping every message; refuses the recipients in ``refuse``."""

    def __init__(self, refuse: frozenset[str] = frozenset()) -> None:
        self.messages: list[EmailMessage] = []
        self.refuse = refuse

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message = message_from_bytes(envelope.original_content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 OK"


@contextmanager
def smtp_server(mailbox: Mailbox, port: int) -> Iterator[Controller]:
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()


def make_settings(dsn: str, smtp_port: int, **changes: object) -> BootstrapSettings:
    fields: dict[str, object] = {
        "database_url": dsn,
        "task_queue": f"bootstrap-{uuid.uuid4()}",
        "base_domain": "example.test",
        "email_provider": "smtp",
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp_port,
        "smtp_timeout_s": 5.0,
        "graceful_shutdown_s": 10.0,
        "retry": FAST,
    }
    return BootstrapSettings(**{**fields, **changes})  # type: ignore[arg-type]


def initiate(
    dsn: str, subdomain: str | None = None, admins: list[Admin] | None = None
) -> BootstrapInput:
    """Emit organization.bootstrap.initiated, as the requester would; returns the input."""
    org_id = uuid.uuid4()
    name = "Acme Clinics"
    subdomain = subdomain if subdomain is not None else f"acme-{org_id.hex[:8]}"
    admins = admins or [Admin("alice@example.org", "admin"), Admin("bob@example.org", "owner")]
    with psycopg.connect(dsn, autocommit=True) as conn:
        job_id = emit_sync(
            conn,
            NewEvent(
                stream_id=org_id,
                stream_type=ev.STREAM_TYPE_ORGANIZATION,
                event_type=ev.BOOTSTRAP_INITIATED,
                event_data={
                    "name": name,
                    "subdomain": subdomain,
                    "admins": [{"email": a.email, "role": a.role} for a in admins],
                },
                idempotency_key=f"test-request:{org_id}",
                event_metadata={"source": "test"},
            ),
        )
    return BootstrapInput(str(org_id), str(job_id), name, subdomain, admins)


async def start(
    client: Client, settings: BootstrapSettings, request: BootstrapInput
) -> WorkflowHandle[OrganizationBootstrapWorkflow, BootstrapResult]:
    return await client.start_workflow(
        OrganizationBootstrapWorkflow.run,
        request,
        id=ev.workflow_id_for(request.org_id),
        task_queue=settings.task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    )


async def run_bootstrap(
    client: Client,
    settings: BootstrapSettings,
    request: BootstrapInput,
    dns: DnsProvider | None = None,
) -> tuple[BootstrapResult, WorkflowHandle[OrganizationBootstrapWorkflow, BootstrapResult]]:
    async with build_worker(client, settings, dns=dns):
        handle = await start(client, settings, request)
        result = await asyncio.wait_for(handle.result(), RESULT_TIMEOUT)
    return result, handle


def stored_events(dsn: str, org_id: str) -> list[tuple[str, dict[str, object]]]:
    """(event_type, event_data) of the stream in order.

    Every event the worker emitted must pass the contract (the request is the test's own,
    and deliberately invalid in some tests).
    """
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT to_jsonb(d) FROM domain_events d WHERE stream_id = %s ORDER BY stream_version",
            (org_id,),
        ).fetchall()
    for (row,) in rows:
        if row["event_type"] != ev.BOOTSTRAP_INITIATED:
            validate_event(row)
    return [(row["event_type"], row["event_data"]) for (row,) in rows]


async def attempts(
    handle: WorkflowHandle[OrganizationBootstrapWorkflow, BootstrapResult],
) -> dict[str, list[int]]:
    """Activity type -> the attempt number each of its executions ended on (from history).

    A local activity's execution is the marker recorded when it ended, with its attempt.
    """
    history = await handle.fetch_history()
    scheduled: dict[int, str] = {}
    result: dict[str, list[int]] = {}
    for event in history.events:
        if event.HasField("marker_recorded_event_attributes"):
            marker = event.marker_recorded_event_attributes
            if marker.marker_name == LOCAL_ACTIVITY_MARKER:
                data = json.loads(marker.details["data"].payloads[0].data)
                result.setdefault(data["activity_type"], []).append(int(data["attempt"]))
        elif event.HasField("activity_task_scheduled_event_attributes"):
            attrs = event.activity_task_scheduled_event_attributes
            scheduled[event.event_id] = attrs.activity_type.name
        elif event.HasField("activity_task_started_event_attributes"):
            started = event.activity_task_started_event_attributes
            name = scheduled[started.scheduled_event_id]
            result.setdefault(name, []).append(started.attempt)
    return result


async def attempts_in_flight(
    handle: WorkflowHandle[OrganizationBootstrapWorkflow, BootstrapResult],
) -> dict[str, int]:
    """Activity type -> attempt number of its pending execution (from describe)."""
    description = await handle.describe()
    pending = description.raw_description.pending_activities
    return {p.activity_type.name: p.attempt for p in pending}


class SlowMailbox(Mailbox):
    """Takes ``delay`` seconds to accept a message; ``receiving`` is set when one arrives."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.receiving = threading.Event()

    async def handle_DATA(self, server, session, envelope):
        self.receiving.set()
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)
