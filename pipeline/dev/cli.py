"""``pipeline dev``: the local services without Docker (PostgreSQL, Kafka, Temporal)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from pipeline import envdoc
from pipeline.cli_exit import EXIT_CONFIG, EXIT_FAILURE, fail
from pipeline.config import DEFAULT_WEB_PORT
from pipeline.dev import services
from pipeline.dev.errors import ServiceError
from pipeline.dev.layout import load_layout

dev_app = typer.Typer(
    help="Local services without Docker: PostgreSQL, Kafka, Temporal.",
    epilog=envdoc.epilog(*envdoc.DEV),
)


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
        raise fail(str(exc)) from exc
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
        raise fail(str(exc)) from exc
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
    """Print `export` lines pointing the pipeline at the local services, with every port."""
    layout = load_layout()
    web_port = os.environ.get("PIPELINE_WEB_PORT", "").strip() or str(DEFAULT_WEB_PORT)
    exports = {
        **layout.env(),
        "PIPELINE_WEB_PORT": web_port,
        "PIPELINE_DEV_DIR": str(layout.state_dir),
        "PIPELINE_DEV_PG_PORT": str(layout.pg_port),
        "PIPELINE_DEV_KAFKA_PORT": str(layout.kafka_port),
        "PIPELINE_DEV_KAFKA_CONTROLLER_PORT": str(layout.kafka_controller_port),
        "PIPELINE_DEV_TEMPORAL_PORT": str(layout.temporal_port),
        "PIPELINE_DEV_TEMPORAL_UI_PORT": str(layout.temporal_ui_port),
    }
    for name, value in exports.items():
        typer.echo(f"export {name}={value}")


@dev_app.command(
    "kafka", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def dev_kafka(
    ctx: typer.Context,
    tool: Annotated[
        str, typer.Argument(help="kafka-configs, kafka-topics, kafka-consumer-groups, ...")
    ],
) -> None:
    """Run one of Kafka's own tools with the arguments that follow, e.g.
    `pipeline dev kafka kafka-configs --bootstrap-server HOST:PORT --describe --entity-type
    topics --entity-name domain-events` (the jars are fetched once, like the broker's).
    """
    import subprocess

    from pipeline.dev.kafka_tools import TOOLS, KafkaTools

    if tool.removesuffix(".sh") not in TOOLS:
        raise fail(
            f"unknown Kafka tool {tool!r}: use one of {', '.join(sorted(TOOLS))}", EXIT_CONFIG
        )
    try:
        argv = KafkaTools(load_layout()).command(tool, ctx.args)
    except ServiceError as exc:
        raise fail(str(exc)) from exc
    raise typer.Exit(subprocess.call(argv))
