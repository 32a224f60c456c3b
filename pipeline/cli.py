"""The ``pipeline`` command line.

Exit codes: 0 success; 1 a runtime failure (a service unreachable, a check failed);
2 bad usage or invalid configuration (nothing was touched); 130 interrupted.

Every command pays for what this module imports before it parses its arguments, and
``pipeline run`` pays it again on every restart: a command imports what it needs in its
own body (Faust, Temporal's client, the reader), never here
(tests/unit/pipeline/test_cli_imports.py).
"""

# ruff: noqa: E402 - the collector is paused (below) before the imports it would slow down

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
import threading

# How long `pipeline run` may start with the cyclic garbage collector paused (below).
GC_PAUSE_MAX_S = 60.0


def _resume_gc() -> None:
    from pipeline import gcpolicy

    gcpolicy.resume()


def _pause_gc_if_starting_the_pipeline(argv: list[str]) -> None:
    """Start `pipeline run` with the cyclic garbage collector paused.

    A restarted ``pipeline run`` spends about 2 s of CPU importing and building its app
    before it consumes again, 12 % of it in collections that find next to nothing (0.32
    s, 266 collections, 1,956 unreachable objects after the imports; bench/chaos_restart.py,
    docs/reliability.md). The worker resumes collection once it is ready
    (:meth:`pipeline.lifecycle.Worker.on_startup_finished`, :func:`pipeline.gcpolicy.resume`),
    freezing what start-up built;
    a start that takes longer than GC_PAUSE_MAX_S (a service that does not answer)
    resumes it then. Only the console script's ``run`` is paused, never an importer.
    """
    args = [a for a in argv[1:] if not a.startswith("-")]
    if os.path.basename(argv[0]) == "pipeline" and args[:1] == ["run"]:
        gc.disable()
        timer = threading.Timer(GC_PAUSE_MAX_S, _resume_gc)
        timer.daemon = True
        timer.start()


_pause_gc_if_starting_the_pipeline(sys.argv)

from collections.abc import Awaitable, Callable
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import TYPE_CHECKING, Annotated

import typer

from pipeline import deadletters, envdoc, eventloop, trace
from pipeline.cli_exit import EXIT_CONFIG, EXIT_FAILURE, exit_now, fail
from pipeline.config import (
    Settings,
    database_url_from_env,
    load_settings,
    placeholder_problems,
    reader_config,
)
from pipeline.console.cli import console
from pipeline.dev.cli import dev_app
from pipeline.emit_cli import emit_app
from pipeline.errors import ConfigError, PipelineError
from pipeline.logsetup import LOG_FORMAT

if TYPE_CHECKING:
    from pipeline.replay import ReplaySummary
    from replication.lsn import LSN

app = typer.Typer(
    help="WAL -> Kafka -> Faust -> Temporal, exactly once. Exit codes: 0 ok, 1 failure, "
    "2 invalid configuration or usage.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(dev_app, name="dev")
app.add_typer(emit_app, name="emit")
app.add_typer(deadletters.app, name="dead-letters")
app.command(epilog=envdoc.epilog(*envdoc.SETTINGS, "pipeline.webauth", "pipeline.console.cli"))(
    console
)
app.command(epilog=envdoc.epilog(extra=("PIPELINE_DATABASE_URL",)))(trace.trace)


def _version() -> str:
    try:
        return package_version("pipeline")
    except PackageNotFoundError:  # a source tree that was never installed
        return "unknown"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"pipeline {_version()}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format=LOG_FORMAT,
        stream=sys.stderr,
    )
    if not verbose:
        # aiokafka narrates every group join and metadata refresh at INFO.
        logging.getLogger("aiokafka").setLevel(logging.WARNING)


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        raise fail(str(exc), EXIT_CONFIG) from exc


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
        fail(reason, EXIT_CONFIG)
        if temporal:
            exit_now(EXIT_CONFIG)
        raise typer.Exit(EXIT_CONFIG)


async def _until_signalled(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run main(stop) with SIGTERM/SIGINT setting stop (graceful shutdown)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await main(stop)


@app.command(epilog=envdoc.epilog(*envdoc.RUN))
def run() -> None:
    """Run the WAL -> Kafka reader and the Faust agents (the pipeline) until SIGTERM."""
    from aiokafka.errors import KafkaError

    from pipeline import reach
    from pipeline.agents.errors import TopicLayoutError
    from pipeline.runner import run as run_pipeline

    settings = _settings()
    _handshakes(settings, temporal=True)
    try:
        run_pipeline(settings)
    except TopicLayoutError as exc:
        raise fail(str(exc), EXIT_CONFIG) from exc
    except (KafkaError, OSError) as exc:
        raise fail(reach.kafka_message(settings.kafka_bootstrap_servers, exc)) from exc


@app.command(epilog=envdoc.epilog(*envdoc.SETTINGS))
def reader() -> None:
    """Run only the WAL -> Kafka reader (`run` runs it together with the agents)."""
    from aiokafka.errors import KafkaError

    from pipeline import reach
    from replication.errors import ReaderSetupError
    from replication.reader import Reader

    settings = _settings()
    _handshakes(settings)

    async def main(stop: asyncio.Event) -> None:
        # Unreachable at start: fail now; once running, the reader retries outages itself.
        await reach.kafka(settings.kafka_bootstrap_servers, settings.kafka_security)
        await Reader(reader_config(settings)).run(stop)

    try:
        eventloop.run(_until_signalled(main))
    except ReaderSetupError as exc:
        raise fail(str(exc), EXIT_CONFIG) from exc
    except reach.Unreachable as exc:
        raise fail(str(exc)) from exc
    except KafkaError as exc:
        raise fail(reach.kafka_message(settings.kafka_bootstrap_servers, exc)) from exc


@app.command(epilog=envdoc.epilog(*envdoc.WORKER))
def worker() -> None:
    """Run the Temporal worker of the organization bootstrap (graceful on SIGTERM)."""
    from pipeline import reach
    from pipeline.bootstrap.settings import from_env
    from pipeline.bootstrap.worker import run_worker

    try:
        settings = from_env(os.environ)
    except PipelineError as exc:
        raise fail(str(exc), EXIT_CONFIG) from exc
    placeholders = placeholder_problems(os.environ, envdoc.variables(*envdoc.WORKER))
    if placeholders:
        raise fail("invalid configuration:\n  - " + "\n  - ".join(placeholders), EXIT_CONFIG)
    from pipeline.handshake import refusal

    target = (settings.temporal_address, settings.temporal_namespace, settings.temporal_security)
    reason = asyncio.run(refusal(temporal=target))
    if reason is not None:
        fail(reason, EXIT_CONFIG)
        exit_now(EXIT_CONFIG)

    async def main() -> None:
        await reach.temporal(
            settings.temporal_address, settings.temporal_namespace, settings.temporal_security
        )
        await run_worker(settings)

    try:
        eventloop.run(main())
    except reach.Unreachable as exc:
        fail(str(exc))
        exit_now(1)
    # A clean stop too: the Temporal client's threads can abort interpreter finalization
    # (exit 134 instead of 0 after "bootstrap worker stopped").
    logging.shutdown()
    exit_now(0)


def _lsn(value: str | None) -> LSN | None:
    from replication.lsn import LSN

    if value is None:
        return None
    try:
        return LSN.parse(value)
    except ValueError as exc:
        raise typer.BadParameter(f"{value!r} is not an LSN like 16/B374D848") from exc


@app.command(epilog=envdoc.epilog(*envdoc.SETTINGS))
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
    projection rows, queue events and workflow starts. Exit code 2 when the range has a
    hole (records deleted from a partition at or after --from-lsn; the message names the
    partitions and the smallest safe --from-lsn) or --to-lsn is below --from-lsn. The
    summary counts what this replay did.
    """
    from aiokafka.errors import KafkaError

    from pipeline import reach
    from pipeline.progress import Progress
    from pipeline.replay import ReplayRangeError
    from pipeline.replay import replay as run_replay

    start, end = _lsn(from_lsn), _lsn(to_lsn)
    assert start is not None
    if end is not None and end < start:
        raise fail(
            f"--to-lsn {end} is below --from-lsn {start}: the range is empty; "
            "give --to-lsn at or after --from-lsn (or leave it out for everything after)",
            EXIT_CONFIG,
        )
    settings = _settings()
    _handshakes(settings, temporal=not dry_run)

    bar = Progress("replaying")

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
        raise fail(str(exc), EXIT_CONFIG) from exc
    except PipelineError as exc:
        raise fail(str(exc)) from exc
    except (KafkaError, OSError) as exc:
        raise fail(reach.kafka_message(settings.kafka_bootstrap_servers, exc)) from exc
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


@app.command(epilog=envdoc.epilog(*envdoc.SETTINGS))
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
        exit_now(code)
    if code:
        raise typer.Exit(code)


@app.command(epilog=envdoc.epilog(*envdoc.SETTINGS))
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Slot, reader holder, Kafka consumer lag, queue projection counts, dead letters.

    A service that cannot be reached is named (exit 1) after everything else was shown.
    """
    import orjson

    from pipeline.status import gather, render

    settings = _settings()
    _handshakes(settings)
    report = asyncio.run(gather(settings))
    if as_json:
        typer.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        for line in render(report):
            typer.echo(line)
    if report["unavailable"]:
        raise fail(
            "\n".join(f"{name} unavailable: {why}" for name, why in report["unavailable"].items())
        )


@app.command(epilog=envdoc.epilog("pipeline.migrate", extra=("PIPELINE_DATABASE_URL",)))
def migrate() -> None:
    """Apply pending SQL migrations (sql/migrations); a no-op when up to date."""
    import psycopg

    from pipeline.migrate import migrate as run_migrations

    try:
        dsn = database_url_from_env()
        applied = run_migrations(dsn)
    except ConfigError as exc:
        raise fail(str(exc), EXIT_CONFIG) from exc
    except (PipelineError, psycopg.Error) as exc:
        raise fail(f"migration failed: {exc}") from exc
    typer.echo("applied: " + ", ".join(applied) if applied else "database is up to date")
