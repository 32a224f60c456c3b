"""The ``pipeline`` command line.

Exit codes: 0 success; 1 a runtime failure (a service unreachable, a check failed);
2 bad usage or invalid configuration (nothing was touched); 130 interrupted.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, NoReturn

import psycopg
import typer

from pipeline import events
from pipeline.config import Settings, database_url_from_env, load_settings, reader_config
from pipeline.dev import services
from pipeline.dev.errors import ServiceError
from pipeline.dev.layout import load_layout
from pipeline.errors import ConfigError, PipelineError
from pipeline.eventstore import NewEvent, emit_sync
from replication.lsn import LSN

if TYPE_CHECKING:
    from pipeline.replay import ReplaySummary

EXIT_FAILURE = 1
EXIT_CONFIG = 2

app = typer.Typer(
    help="WAL -> Kafka -> Faust -> Temporal, exactly once. Exit codes: 0 ok, 1 failure, "
    "2 invalid configuration or usage.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
dev_app = typer.Typer(help="Local services without Docker: PostgreSQL, Kafka, Temporal.")
emit_app = typer.Typer(help="Emit domain events (test emissions).")
app.add_typer(dev_app, name="dev")
app.add_typer(emit_app, name="emit")


def _fail(message: str, code: int = EXIT_FAILURE) -> typer.Exit:
    typer.secho(message, err=True, fg=typer.colors.RED)
    return typer.Exit(code)


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    if not verbose:
        # aiokafka narrates every group join and metadata refresh at INFO.
        logging.getLogger("aiokafka").setLevel(logging.WARNING)


@dev_app.command("up")
def dev_up(
    service: Annotated[
        list[str] | None, typer.Option("--service", "-s", help="Only this service (repeatable).")
    ] = None,
) -> None:
    """Start PostgreSQL, Kafka and Temporal (idempotent); wait until each is healthy."""
    try:
        started = services.up(names=service)
    except ServiceError as exc:
        raise _fail(str(exc)) from exc
    layout = load_layout()
    for status in services.status(layout):
        if service and status.name not in service:
            continue
        word = "started" if status.name in started else "already running"
        typer.echo(f"{status.name:9} {word:16} port {status.port}  pid {status.pid}")
    typer.echo(f"logs: {layout.log_dir} (postgres: {layout.state_dir / 'postgres'})")


@dev_app.command("down")
def dev_down() -> None:
    """Stop the services that `dev up` started (nothing else)."""
    try:
        stopped = services.down()
    except ServiceError as exc:
        raise _fail(str(exc)) from exc
    typer.echo("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@dev_app.command("status")
def dev_status() -> None:
    """Show whether each local service runs and answers."""
    all_ok = True
    for status in services.status():
        state = "healthy" if status.healthy else ("unhealthy" if status.pid else "stopped")
        all_ok &= status.healthy
        typer.echo(f"{status.name:9} {state:10} port {status.port}  pid {status.pid or '-'}")
    if not all_ok:
        raise typer.Exit(EXIT_FAILURE)


@dev_app.command("env")
def dev_env() -> None:
    """Print `export` lines pointing the pipeline at the local services."""
    for name, value in load_layout().env().items():
        typer.echo(f"export {name}={value}")


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        raise _fail(str(exc), EXIT_CONFIG) from exc


def _exit_now(code: int) -> NoReturn:
    """Exit without interpreter finalization once a Temporal client ran: its core's
    threads can abort a finalizing interpreter ("PyGILState_Release", temporalio
    sdk-python issue 300), which turned an exit 2 into 134 about one time in three."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _handshakes(settings: Settings, *, kafka: bool = True, temporal: bool = False) -> None:
    """Exit 2 with one line when a secured Kafka / Temporal refuses the handshake."""
    from pipeline.handshake import refusal

    reason = asyncio.run(
        refusal(
            (settings.kafka_bootstrap_servers, settings.kafka_security) if kafka else None,
            (settings.temporal_address, settings.temporal_namespace, settings.temporal_security)
            if temporal
            else None,
        )
    )
    if reason is not None:
        _fail(reason, EXIT_CONFIG)
        if temporal:
            _exit_now(EXIT_CONFIG)
        raise typer.Exit(EXIT_CONFIG)


async def _until_signalled(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run main(stop) with SIGTERM/SIGINT setting stop (graceful shutdown)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await main(stop)


@app.command()
def run() -> None:
    """Run the WAL -> Kafka reader and the Faust agents (the pipeline) until SIGTERM."""
    from pipeline.runner import run as run_pipeline

    settings = _settings()
    _handshakes(settings, temporal=True)
    run_pipeline(settings)


@app.command()
def reader() -> None:
    """Run only the WAL -> Kafka reader (`run` runs it together with the agents)."""
    from replication.errors import ReaderSetupError
    from replication.reader import Reader

    settings = _settings()
    _handshakes(settings)
    try:
        asyncio.run(_until_signalled(Reader(reader_config(settings)).run))
    except ReaderSetupError as exc:
        raise _fail(str(exc), EXIT_CONFIG) from exc


@app.command()
def worker() -> None:
    """Run the Temporal worker of the organization bootstrap (graceful on SIGTERM)."""
    from pipeline.bootstrap.settings import from_env
    from pipeline.bootstrap.worker import run_worker

    try:
        settings = from_env(os.environ)
    except PipelineError as exc:
        raise _fail(str(exc), EXIT_CONFIG) from exc
    from pipeline.handshake import refusal

    target = (settings.temporal_address, settings.temporal_namespace, settings.temporal_security)
    reason = asyncio.run(refusal(temporal=target))
    if reason is not None:
        _fail(reason, EXIT_CONFIG)
        _exit_now(EXIT_CONFIG)
    asyncio.run(run_worker(settings))


class _Progress:
    """A one-line progress bar on stderr (records done / total, rate)."""

    def __init__(self, label: str) -> None:
        self.label, self.done, self.of = label, 0, 0
        self.started = self.shown = time.monotonic()

    def total(self, n: int) -> None:
        self.of = n

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.shown >= 0.2:
            self.shown = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        pct = 100.0 * self.done / self.of if self.of else 100.0
        rate = self.done / max(now - self.started, 1e-6)
        width = 30
        filled = int(width * pct / 100)
        sys.stderr.write(
            f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] "
            f"{self.done}/{self.of} ({pct:5.1f}%) {rate:,.0f}/s"
        )
        sys.stderr.flush()

    def close(self) -> None:
        if self.of:
            self._draw(time.monotonic())
            sys.stderr.write("\n")


def _lsn(value: str | None) -> LSN | None:
    if value is None:
        return None
    try:
        return LSN.parse(value)
    except ValueError as exc:
        raise typer.BadParameter(f"{value!r} is not an LSN like 16/B374D848") from exc


@app.command()
def replay(
    from_lsn: Annotated[str, typer.Option("--from-lsn", help="First commit LSN to re-drive, X/X.")],
    to_lsn: Annotated[
        str | None, typer.Option("--to-lsn", help="Last commit LSN to re-drive (default: all).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only count what would be re-driven.")
    ] = False,
) -> None:
    """Re-drive the agents over the retained topic from --from-lsn (the slot is never rewound).

    Idempotent: over a fully processed range it changes nothing; it repairs missing
    projection rows, queue events and workflow starts. Exit code 2 when --from-lsn is
    older than the oldest retained record (the message names that record's LSN).
    """
    from pipeline.replay import ReplayRangeError
    from pipeline.replay import replay as run_replay

    start, end = _lsn(from_lsn), _lsn(to_lsn)
    assert start is not None
    settings = _settings()
    _handshakes(settings, temporal=not dry_run)

    bar = _Progress("replaying")

    async def go() -> ReplaySummary:
        try:
            return await run_replay(
                settings, start, end, dry_run=dry_run, on_total=bar.total, progress=bar.advance
            )
        finally:
            bar.close()

    try:
        summary = asyncio.run(go())
    except ReplayRangeError as exc:
        raise _fail(str(exc), EXIT_CONFIG) from exc
    except PipelineError as exc:
        raise _fail(str(exc)) from exc
    word = "would re-drive" if summary.dry_run else "re-drove"
    typer.echo(
        f"scanned {summary.records_scanned} record(s); {word} {summary.events_redriven} "
        f"event(s) with commit_lsn >= {start}" + (f" and <= {end}" if end else "")
    )
    for event_type, count in summary.by_event_type.most_common():
        typer.echo(f"  {count:>8}  {event_type}")
    if not summary.dry_run:
        typer.echo(
            f"repaired: {summary.events_emitted} event(s) emitted, "
            f"{summary.projection_rows_repaired} projection update(s), "
            f"{summary.workflows_started} workflow(s) started ({summary.seconds:.1f}s)"
        )


@app.command()
def check() -> None:
    """Validate the configuration and reach each service, without side effects."""
    from pipeline.check import run_checks

    settings = _settings()
    results = asyncio.run(run_checks(settings))
    for result in results:
        mark = (
            typer.style("ok  ", fg=typer.colors.GREEN)
            if result.ok
            else typer.style("FAIL", fg=typer.colors.RED)
        )
        typer.echo(f"{mark} {result.name:9} {result.detail}")
    # A refused TLS/SASL handshake is configuration (2); an unreachable service is 1.
    code = 0 if all(r.ok for r in results) else EXIT_FAILURE
    code = EXIT_CONFIG if any(r.refused for r in results) else code
    if settings.temporal_security.tls:
        _exit_now(code)
    if code:
        raise typer.Exit(code)


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Slot, reader holder, Kafka consumer lag, queue projection counts, dead letters."""
    import orjson

    from pipeline.status import gather

    settings = _settings()
    _handshakes(settings)
    try:
        report = asyncio.run(gather(settings))
    except (psycopg.Error, OSError) as exc:
        raise _fail(f"status unavailable: {exc}") from exc
    if as_json:
        typer.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
        return
    slot, kafka = report["slot"], report["kafka"]
    if slot["exists"]:
        holder = f"pid {slot['active_pid']}" if slot["active"] else "nobody (no reader active)"
        typer.echo(
            f"slot      {slot['name']}: confirmed {slot['confirmed_flush_lsn']}, "
            f"lag {slot['lag_bytes']} bytes, held by {holder}"
        )
    else:
        typer.echo(f"slot      {slot['name']}: not created yet")
    lags = ", ".join(f"p{p['partition']}={p['lag']}" for p in kafka["partitions"])
    typer.echo(
        f"kafka     {kafka['topic']} group {kafka['consumer_group']}: lag {kafka['total_lag']} ({lags})"
    )
    typer.echo("queue     " + ", ".join(f"{k}={v}" for k, v in report["queue"].items()))
    typer.echo(f"dead      {kafka['dead_letters']} record(s) in the dead-letter topic")


@app.command()
def migrate() -> None:
    """Apply pending SQL migrations (sql/migrations); a no-op when up to date."""
    from pipeline.migrate import migrate as run_migrations

    try:
        dsn = database_url_from_env()
        applied = run_migrations(dsn)
    except ConfigError as exc:
        raise _fail(str(exc), EXIT_CONFIG) from exc
    except (PipelineError, psycopg.Error) as exc:
        raise _fail(f"migration failed: {exc}") from exc
    typer.echo("applied: " + ", ".join(applied) if applied else "database is up to date")


def _parse_admin(raw: str) -> dict[str, str]:
    email, _, role = raw.partition(":")
    return {"email": email, "role": role or "organization_admin"}


@emit_app.command("bootstrap")
def emit_bootstrap(
    name: Annotated[str, typer.Option(help="Organization name.")],
    subdomain: Annotated[str, typer.Option(help="Subdomain label, e.g. acme.")],
    admin: Annotated[list[str], typer.Option(help="EMAIL[:ROLE], repeatable.")],
    org_id: Annotated[str | None, typer.Option(help="Organization id (default: new).")] = None,
    signature: Annotated[
        str, typer.Option(help="Which emit_domain_event signature: stream or aggregate.")
    ] = "stream",
) -> None:
    """Emit organization.bootstrap.initiated, as the reference document's test emission."""
    try:
        dsn = database_url_from_env()
    except ConfigError as exc:
        raise _fail(str(exc), EXIT_CONFIG) from exc
    org = uuid.UUID(org_id) if org_id else uuid.uuid4()
    data = {"name": name, "subdomain": subdomain, "admins": [_parse_admin(a) for a in admin]}
    event = NewEvent(
        stream_id=org,
        stream_type=events.STREAM_TYPE_ORGANIZATION,
        event_type=events.BOOTSTRAP_INITIATED,
        event_data=data,
        event_metadata={"source": "pipeline-cli"},
        idempotency_key=f"cli:{org}:{events.BOOTSTRAP_INITIATED}",
    )
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            if signature == "aggregate":
                from psycopg.types.json import Jsonb

                row = conn.execute(
                    "SELECT api.emit_domain_event(p_event_id => %s, p_event_type => %s, "
                    "p_aggregate_type => %s, p_aggregate_id => %s, p_event_data => %s, "
                    "p_event_metadata => %s, p_idempotency_key => %s)",
                    (
                        uuid.uuid4(),
                        event.event_type,
                        event.stream_type,
                        org,
                        Jsonb(data),
                        Jsonb(dict(event.event_metadata)),
                        event.idempotency_key,
                    ),
                ).fetchone()
                event_id = row[0] if row else None
            else:
                event_id = emit_sync(conn, event)
    except psycopg.Error as exc:
        raise _fail(f"emit failed: {exc}") from exc
    typer.echo(f"organization {org}: event {event_id} ({events.BOOTSTRAP_INITIATED})")
