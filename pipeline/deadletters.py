"""``pipeline dead-letters list|show|redrive``: the operator's way out (DESIGN invariant 7).

Reads ``pipeline_dead_letters`` (migration 0008), where the reader and the agents record
every dead letter once per (position, reason) before its copy goes to the dead-letter
topic. ``redrive`` hands a dead-lettered record to the agents' handlers again, as
``pipeline replay`` does (every effect is idempotent), once its cause is fixed (a
contract that now describes the event type, a projection bug fixed, a dead-letter topic
that now exists). A record that passes is marked ``redriven_at``; one rejected again for
the same reason stays as it is (no second copy in the topic); a copy that never reached
the dead-letter topic (``published = false``) is sent now.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Final

import orjson
import psycopg
import typer
from aiokafka import AIOKafkaProducer

from pipeline.config import Settings, load_settings
from pipeline.errors import ConfigError
from replication.deadletter_store import decode_headers
from replication.kafka_client import client_options
from replication.producer import MAX_MESSAGE_BYTES

app = typer.Typer(help="See, inspect and re-drive dead letters (docs/operations.md).")

_COLUMNS: Final = (
    "dead_letter_key, source, reason_kind, reason, commit_lsn::text, idx, event_id::text, "
    "original_topic, original_partition, original_offset, published, attempts, last_error, "
    "redriven_at, created_at"
)
SHOW_BYTES: Final = 4096


@dataclass(frozen=True, slots=True)
class Entry:
    """One row of ``pipeline_dead_letters`` (without the record's bytes)."""

    key: str
    source: str
    reason_kind: str
    reason: str
    commit_lsn: str | None
    idx: int | None
    event_id: str | None
    topic: str | None
    partition: int | None
    offset: int | None
    published: bool
    attempts: int
    last_error: str | None
    redriven_at: str | None
    created_at: str

    @property
    def where(self) -> str:
        """``topic[partition]@offset`` of the record, or ``-`` (the reader's)."""
        if self.topic is None:
            return "-"
        return f"{self.topic}[{self.partition}]@{self.offset}"

    @property
    def state(self) -> str:
        """``redriven``, ``NOT SENT`` (the copy never reached the topic) or ``open``."""
        if self.redriven_at is not None:
            return "redriven"
        return "open" if self.published else "NOT SENT"


def _entry(row: Sequence[Any]) -> Entry:
    names = Entry.__slots__
    values = dict(zip(names, row[: len(names)], strict=True))
    for name in ("redriven_at", "created_at"):
        if values[name] is not None:
            values[name] = str(values[name])
    return Entry(**values)


def format_entry(entry: Entry) -> str:
    """One line of ``list``."""
    position = f"{entry.commit_lsn}/{entry.idx}" if entry.commit_lsn is not None else "-"
    return (
        f"{entry.key}  {entry.state:8}  {entry.source:10}  {entry.reason_kind:14}  "
        f"lsn={position}  {entry.where}  {entry.reason[:120]}"
    )


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        typer.secho(str(exc), err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from exc


def _connect(settings: Settings) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(settings.database_url.get_secret_value(), autocommit=True)
    except psycopg.Error as exc:
        typer.secho(f"cannot connect to PostgreSQL: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from exc


def fetch_entries(conn: psycopg.Connection[Any], *, everything: bool) -> list[Entry]:
    """The dead letters, oldest first; without ``everything`` only those not redriven."""
    where = "" if everything else " WHERE redriven_at IS NULL"
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM pipeline_dead_letters{where} ORDER BY created_at, dead_letter_key"
    ).fetchall()
    return [_entry(row) for row in rows]


@app.command("list")
def list_(
    everything: Annotated[bool, typer.Option("--all", help="Also the redriven ones.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """The dead letters not yet redriven (key, state, source, reason kind, position)."""
    with _connect(_settings()) as conn:
        entries = fetch_entries(conn, everything=everything)
    if as_json:
        typer.echo(orjson.dumps([_as_dict(e) for e in entries]).decode())
        return
    for entry in entries:
        typer.echo(format_entry(entry))
    typer.echo(f"{len(entries)} dead letter(s)")


def _as_dict(entry: Entry) -> dict[str, object]:
    return {name: getattr(entry, name) for name in Entry.__slots__}


@app.command()
def show(
    key: Annotated[str, typer.Argument(help="The dead letter's key, as `list` prints it.")],
    full: Annotated[bool, typer.Option("--full", help="The whole value, not its start.")] = False,
) -> None:
    """Everything about one dead letter: reason, position, headers, the record's value."""
    with _connect(_settings()) as conn:
        row = conn.execute(
            f"SELECT {_COLUMNS}, record_key, record_value, record_headers "
            "FROM pipeline_dead_letters WHERE dead_letter_key = %s",
            (key,),
        ).fetchone()
    if row is None:
        typer.secho(
            f"no dead letter {key!r}: `pipeline dead-letters list --all` shows the keys",
            err=True,
            fg=typer.colors.RED,
        )
        raise typer.Exit(1)
    entry = _entry(row)
    for name, value in _as_dict(entry).items():
        typer.echo(f"{name:12} {value}")
    record_key, value, headers = row[15], row[16], row[17]
    typer.echo(f"{'record key':12} {bytes(record_key or b'').decode(errors='replace')}")
    for name, raw in decode_headers(headers):
        typer.echo(f"{'header':12} {name}={raw.decode(errors='replace')[:200]}")
    data = bytes(value or b"")
    shown = data if full else data[:SHOW_BYTES]
    typer.echo(f"{'value':12} ({len(data)} bytes)")
    typer.echo(shown.decode(errors="replace"))
    if len(shown) < len(data):
        typer.echo(f"... ({len(data) - len(shown)} more bytes: --full)")


@app.command()
def redrive(
    key: Annotated[str | None, typer.Argument(help="The dead letter's key.")] = None,
    every: Annotated[bool, typer.Option("--all", help="Every open dead letter.")] = False,
) -> None:
    """Hand dead-lettered records to the agents again, once their cause is fixed."""
    if (key is None) == (not every):
        typer.secho("give one KEY or --all", err=True, fg=typer.colors.RED)
        raise typer.Exit(2)
    settings = _settings()
    from pipeline.deadletters_redrive import redrive as run_redrive

    try:
        outcomes = asyncio.run(run_redrive(settings, key))
    except (psycopg.Error, OSError) as exc:
        typer.secho(f"redrive failed: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from exc
    if key is not None and not outcomes:
        typer.secho(f"no open dead letter {key!r}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1)
    for dead_key, outcome in outcomes:
        typer.echo(f"{dead_key}: {outcome}")
    if any(not outcome.startswith("redriven") for _, outcome in outcomes):
        raise typer.Exit(1)


def producer(settings: Settings) -> AIOKafkaProducer:
    """The producer redrive sends dead letters with (as large as the topic takes)."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_idempotence=True,
        acks="all",
        max_request_size=MAX_MESSAGE_BYTES,
        **client_options(settings.kafka_security),
    )
