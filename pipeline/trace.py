"""``pipeline trace <org-id | workflow-id>``: one bootstrap's event chain, +ms per event.

The chain is read from the event store (``domain_events`` of the organization's stream)
and the three projections; :func:`verdict` (pure) says whether it is complete, and if
not which event is missing: the first event of the expected chain, in its usual order,
that the store does not hold (``user.invited`` and ``invitation.email.sent`` are expected
once per admin of the ``initiated`` event). A failed bootstrap is complete when it
reached ``workflow.queue.failed``, and its reason is shown. The console's bootstrap page
(:mod:`pipeline.console`) shows the same chain.

Exit codes: 0 the bootstrap completed; 1 the chain is incomplete (the missing event is
named) or the bootstrap failed (its reason is named), or PostgreSQL is unreachable;
2 the argument is neither an organization id nor a workflow id.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Final

import orjson
import psycopg
import typer

from pipeline import events as ev
from pipeline import reach
from pipeline.config import database_url_from_env
from pipeline.errors import ConfigError

EXIT_FAILURE: Final = 1
EXIT_CONFIG: Final = 2

# The success path, in order: the workflow's first step records workflow_started (under
# the starter's key, so the starter's own emit adds nothing), so it precedes every event
# of the workflow's activities (docs/reliability.md).
SUCCESS_CHAIN: Final = (
    ev.BOOTSTRAP_INITIATED,
    ev.QUEUE_PENDING,
    ev.QUEUE_CLAIMED,
    ev.BOOTSTRAP_WORKFLOW_STARTED,
    ev.ORGANIZATION_CREATED,
    ev.DNS_RECORD_CREATED,
    ev.USER_INVITED,
    ev.INVITATION_EMAIL_SENT,
    ev.BOOTSTRAP_COMPLETED,
    ev.QUEUE_COMPLETED,
)
FAILURE_CHAIN: Final = (
    ev.BOOTSTRAP_INITIATED,
    ev.QUEUE_PENDING,
    ev.BOOTSTRAP_FAILED,
    ev.QUEUE_FAILED,
)
PER_ADMIN: Final = frozenset({ev.USER_INVITED, ev.INVITATION_EMAIL_SENT})
WORKFLOW_PREFIX: Final = ev.workflow_id_for("")


@dataclass(frozen=True, slots=True)
class ChainEvent:
    """One event of the chain, with its time since ``initiated`` (or the first event)."""

    version: int
    event_type: str
    created_at: datetime
    ms: float
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Verdict:
    """Where the chain stands: ``completed``, ``failed`` or ``incomplete``."""

    state: str
    missing: str | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.state == "completed"


@dataclass(frozen=True, slots=True)
class Chain:
    """An organization's bootstrap as the event store and the projections have it."""

    org_id: uuid.UUID
    workflow_id: str
    events: list[ChainEvent]
    queue: dict[str, Any] | None = None
    organization: dict[str, Any] | None = None
    invitations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def verdict(self) -> Verdict:
        return verdict(self.events)


def org_id_of(target: str) -> uuid.UUID | None:
    """The organization id that ``target`` (an org id or ``org-bootstrap-<id>``) names."""
    raw = target.strip()
    raw = raw.removeprefix(WORKFLOW_PREFIX)
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


def timeline(rows: list[tuple[int, str, datetime, Any]]) -> list[ChainEvent]:
    """Rows (version, type, created_at, data) as events with +ms from ``initiated``."""
    if not rows:
        return []
    start = next((r[2] for r in rows if r[1] == ev.BOOTSTRAP_INITIATED), rows[0][2])
    return [
        ChainEvent(
            version=int(version),
            event_type=str(event_type),
            created_at=created_at,
            ms=(created_at - start).total_seconds() * 1000,
            data=dict(data) if isinstance(data, dict) else {},
        )
        for version, event_type, created_at, data in rows
    ]


def _admins(chain: list[ChainEvent]) -> int:
    for event in chain:
        if event.event_type == ev.BOOTSTRAP_INITIATED:
            admins = event.data.get("admins")
            return len(admins) if isinstance(admins, list) and admins else 1
    return 1


def verdict(chain: list[ChainEvent]) -> Verdict:
    """Whether ``chain`` is a whole bootstrap, and if not the first missing event."""
    seen: dict[str, int] = {}
    for event in chain:
        seen[event.event_type] = seen.get(event.event_type, 0) + 1
    failed = ev.BOOTSTRAP_FAILED in seen or ev.QUEUE_FAILED in seen
    expected = FAILURE_CHAIN if failed else SUCCESS_CHAIN
    admins = _admins(chain)
    for event_type in expected:
        want = admins if event_type in PER_ADMIN else 1
        if seen.get(event_type, 0) < want:
            missing = (
                event_type if want == 1 else f"{event_type} ({seen.get(event_type, 0)} of {want})"
            )
            return Verdict("incomplete", missing=missing, reason=failure_reason(chain))
    if failed:
        return Verdict("failed", reason=failure_reason(chain) or "no reason recorded")
    return Verdict("completed")


def failure_reason(chain: list[ChainEvent]) -> str | None:
    """Why the bootstrap failed or was compensated, from its failure events."""
    parts: list[str] = []
    for event in chain:
        data = event.data
        if event.event_type == ev.BOOTSTRAP_FAILED:
            parts.append(f"failed at {data.get('stage', '?')}: {data.get('reason', '?')}")
        elif event.event_type == ev.QUEUE_FAILED and not parts:
            parts.append(f"job failed: {data.get('error', '?')}")
        elif event.event_type in (ev.DNS_RECORD_REMOVED, ev.INVITATION_REVOKED):
            parts.append(f"compensated: {event.event_type} ({data.get('reason', '?')})")
    return "; ".join(parts) or None


_EVENTS_SQL = (
    "SELECT stream_version, event_type, created_at, event_data FROM domain_events "
    "WHERE stream_id = %s ORDER BY stream_version"
)
_QUEUE_SQL = (
    "SELECT status, workflow_id, run_id, worker_id, attempts, last_error "
    "FROM workflow_queue_projection WHERE stream_id = %s ORDER BY created_at DESC LIMIT 1"
)
_ORG_SQL = (
    "SELECT name, subdomain, status, subdomain_metadata->>'fqdn', failure_reason "
    "FROM organizations_projection WHERE id = %s"
)
_INVITATIONS_SQL = (
    "SELECT email, role, status FROM invitations_projection "
    "WHERE organization_id = %s ORDER BY email"
)


def _named(names: tuple[str, ...], row: Any) -> dict[str, Any] | None:
    return dict(zip(names, row, strict=True)) if row is not None else None


async def load(conn: psycopg.AsyncConnection[Any], org_id: uuid.UUID) -> Chain:
    """The chain and projection states of ``org_id`` (empty when nothing was emitted)."""
    rows = await (await conn.execute(_EVENTS_SQL, (org_id,))).fetchall()
    queue = await (await conn.execute(_QUEUE_SQL, (org_id,))).fetchone()
    org = await (await conn.execute(_ORG_SQL, (org_id,))).fetchone()
    invitations = await (await conn.execute(_INVITATIONS_SQL, (org_id,))).fetchall()
    queue_state = _named(
        ("status", "workflow_id", "run_id", "worker_id", "attempts", "last_error"), queue
    )
    return Chain(
        org_id=org_id,
        workflow_id=(queue_state or {}).get("workflow_id") or ev.workflow_id_for(str(org_id)),
        events=timeline([tuple(r) for r in rows]),
        queue=queue_state,
        organization=_named(("name", "subdomain", "status", "fqdn", "failure_reason"), org),
        invitations=[
            d for r in invitations if (d := _named(("email", "role", "status"), r)) is not None
        ],
    )


def as_json(chain: Chain) -> dict[str, Any]:
    """The chain for ``--json`` (and the console's stream)."""
    result = chain.verdict
    return {
        "organization_id": str(chain.org_id),
        "workflow_id": chain.workflow_id,
        "state": result.state,
        "missing": result.missing,
        "reason": result.reason,
        "events": [
            {
                "version": e.version,
                "event_type": e.event_type,
                "created_at": e.created_at.isoformat(),
                "ms": round(e.ms, 1),
            }
            for e in chain.events
        ],
        "queue": chain.queue,
        "organization": chain.organization,
        "invitations": chain.invitations,
    }


def render(chain: Chain) -> list[str]:
    """The terminal lines: the chain with +ms, then the projections and the verdict."""
    lines = [f"organization {chain.org_id}  workflow {chain.workflow_id}", ""]
    lines.append(f"{'#':>3}  {'event':45} {'+ms':>9}")
    for e in chain.events:
        lines.append(f"{e.version:>3}  {e.event_type:45} {e.ms:>9.1f}")
    lines.append("")
    lines.append(f"queue projection:         {chain.queue}")
    lines.append(f"organizations_projection: {chain.organization}")
    lines.append(f"invitations_projection:   {chain.invitations}")
    return lines


async def read(dsn: str, org_id: uuid.UUID) -> Chain:
    """The chain of ``org_id``, on a connection of its own."""
    async with await psycopg.AsyncConnection.connect(
        dsn, autocommit=True, connect_timeout=10
    ) as conn:
        return await load(conn, org_id)


def _fail(message: str, code: int) -> typer.Exit:
    typer.secho(message, err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def trace(
    target: Annotated[
        str, typer.Argument(help="The organization id, or its workflow id org-bootstrap-<id>.")
    ],
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """One bootstrap's event chain with +ms per event, and its projections.

    Exit 1 when the chain is incomplete (naming the missing event) or the bootstrap failed
    (naming why); 0 when it completed.
    """
    org_id = org_id_of(target)
    if org_id is None:
        raise _fail(
            f"{target!r} is neither an organization id (a UUID) nor a workflow id "
            f"({WORKFLOW_PREFIX}<uuid>)",
            EXIT_CONFIG,
        )
    try:
        dsn = database_url_from_env()
    except ConfigError as exc:
        raise _fail(str(exc), EXIT_CONFIG) from exc
    try:
        chain = asyncio.run(read(dsn, org_id))
    except (psycopg.Error, OSError) as exc:
        raise _fail(reach.postgres_message(exc), EXIT_FAILURE) from exc
    result = chain.verdict
    if json_out:
        typer.echo(orjson.dumps(as_json(chain), option=orjson.OPT_INDENT_2).decode())
    elif chain.events:
        for line in render(chain):
            typer.echo(line)
    if not chain.events:
        raise _fail(
            f"no event for organization {org_id}: nothing was emitted on its stream "
            "(check the id, or PIPELINE_DATABASE_URL)",
            EXIT_FAILURE,
        )
    if result.state == "incomplete":
        raise _fail(f"incomplete chain: {result.missing} is missing", EXIT_FAILURE)
    if result.state == "failed":
        raise _fail(f"bootstrap failed: {result.reason}", EXIT_FAILURE)
    if not json_out:
        typer.echo(f"\ncomplete: {len(chain.events)} events")
