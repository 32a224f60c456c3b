"""``pipeline emit``: test emissions, checked against the contract before anything is written.

The event store is append-only: an event the contract rejects can never be taken back
and would only be dead-lettered later. So ``emit`` validates the event it is about to
write with the same contract the agents use, and refuses (exit 2) naming the field.
"""

from __future__ import annotations

import enum
import uuid
from typing import Annotated

import psycopg
import typer
from psycopg.types.json import Jsonb

from pipeline import envdoc, events
from pipeline.cli_exit import EXIT_CONFIG, EXIT_FAILURE, fail
from pipeline.config import database_url_from_env
from pipeline.contract import ContractError, ContractViolation, default_contract
from pipeline.errors import ConfigError
from pipeline.eventstore import NewEvent, emit_sync

emit_app = typer.Typer(help="Emit domain events (test emissions).")


class Signature(enum.StrEnum):
    """The two signatures of api.emit_domain_event."""

    stream = "stream"
    aggregate = "aggregate"


def _parse_admin(raw: str) -> dict[str, str]:
    email, _, role = raw.partition(":")
    return {"email": email, "role": role or "organization_admin"}


def _org_id(raw: str | None) -> uuid.UUID:
    if raw is None:
        return uuid.uuid4()
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise typer.BadParameter(
            f"{raw!r} is not a UUID (e.g. {uuid.uuid4()}); leave it out for a new one",
            param_hint="--org-id",
        ) from None


def contract_problem(event: NewEvent) -> str | None:
    """Why the contract would reject event once written, or None."""
    contract = default_contract()
    if event.event_type not in contract.event_types():
        return f"the contract has no event type {event.event_type!r}"
    row: dict[str, object] = dict(contract.examples(event.event_type)[0].payload)
    row.update(
        id=str(uuid.uuid4()),
        stream_id=str(event.stream_id),
        stream_type=event.stream_type,
        event_type=event.event_type,
        event_data=dict(event.event_data),
        event_metadata=dict(event.event_metadata),
        idempotency_key=event.idempotency_key,
    )
    try:
        contract.validate_event(row)
    except ContractViolation as exc:
        return str(exc)
    return None


def _write(dsn: str, event: NewEvent, signature: Signature) -> uuid.UUID | None:
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        if signature is Signature.stream:
            return emit_sync(conn, event)
        row = conn.execute(
            "SELECT api.emit_domain_event(p_event_id => %s, p_event_type => %s, "
            "p_aggregate_type => %s, p_aggregate_id => %s, p_event_data => %s, "
            "p_event_metadata => %s, p_idempotency_key => %s)",
            (
                uuid.uuid4(),
                event.event_type,
                event.stream_type,
                event.stream_id,
                Jsonb(dict(event.event_data)),
                Jsonb(dict(event.event_metadata)),
                event.idempotency_key,
            ),
        ).fetchone()
        return row[0] if row else None


@emit_app.command(
    "bootstrap",
    epilog=envdoc.epilog("pipeline.contract", extra=("PIPELINE_DATABASE_URL",)),
)
def emit_bootstrap(
    name: Annotated[str, typer.Option(help="Organization name.")],
    subdomain: Annotated[str, typer.Option(help="Subdomain label, e.g. acme.")],
    admin: Annotated[list[str], typer.Option(help="EMAIL[:ROLE], repeatable.")],
    org_id: Annotated[str | None, typer.Option(help="Organization id (default: new).")] = None,
    signature: Annotated[
        Signature, typer.Option(help="Which emit_domain_event signature.")
    ] = Signature.stream,
) -> None:
    """Emit organization.bootstrap.initiated, as the reference document's test emission.

    The event is checked against the contract first: nothing is written when it would be
    rejected (exit 2, naming the field).
    """
    org = _org_id(org_id)
    try:
        dsn = database_url_from_env()
    except ConfigError as exc:
        raise fail(str(exc), EXIT_CONFIG) from exc
    event = NewEvent(
        stream_id=org,
        stream_type=events.STREAM_TYPE_ORGANIZATION,
        event_type=events.BOOTSTRAP_INITIATED,
        event_data={
            "name": name,
            "subdomain": subdomain,
            "admins": [_parse_admin(a) for a in admin],
        },
        event_metadata={"source": "pipeline-cli"},
        idempotency_key=f"cli:{org}:{events.BOOTSTRAP_INITIATED}",
    )
    try:
        problem = contract_problem(event)
    except ContractError as exc:
        raise fail(
            f"cannot load the contract: {exc} (PIPELINE_CONTRACT_PATH)", EXIT_CONFIG
        ) from exc
    if problem is not None:
        raise fail(
            f"not emitted: the contract rejects this event ({problem}); fix the option "
            "and run again (the event store is append-only, nothing was written)",
            EXIT_CONFIG,
        )
    try:
        event_id = _write(dsn, event, signature)
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise fail(f"emit failed: {first} (check PIPELINE_DATABASE_URL)", EXIT_FAILURE) from exc
    typer.echo(f"organization {org}: event {event_id} ({events.BOOTSTRAP_INITIATED})")
