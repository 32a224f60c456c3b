"""``pipeline console``: serve the console (its own port, ``PIPELINE_CONSOLE_PORT``).

Variables: the pipeline's settings (``pipeline.config``; ``/pipeline`` shows what
``pipeline status`` reads), ``PIPELINE_WEB_AUTH_TOKEN`` / ``PIPELINE_WEB_AUTH_PROXY_HEADER``
(who may write, :mod:`pipeline.webauth`), ``PIPELINE_CONSOLE_PORT`` (default 6067) and
``PIPELINE_TEMPORAL_UI_URL`` (the Temporal UI's base address, for the workflow links).
"""

from __future__ import annotations

import logging
import os
from typing import Annotated, Final
from urllib.parse import urlsplit

import typer

from pipeline import webauth
from pipeline.config import load_settings
from pipeline.errors import ConfigError

DEFAULT_PORT: Final = 6067
EXIT_CONFIG: Final = 2
log = logging.getLogger(__name__)


def _fail(message: str) -> typer.Exit:
    typer.secho(message, err=True, fg=typer.colors.RED)
    return typer.Exit(EXIT_CONFIG)


def _port(raw: str) -> int:
    try:
        port = int(raw)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise _fail(f"PIPELINE_CONSOLE_PORT={raw!r} is not a TCP port (1-65535)")
    return port


def console(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int | None, typer.Option(help="Port (default PIPELINE_CONSOLE_PORT or 6067).")
    ] = None,
    temporal_ui_url: Annotated[
        str | None,
        typer.Option(help="Temporal UI base address (default PIPELINE_TEMPORAL_UI_URL)."),
    ] = None,
) -> None:
    """Serve the console: /organizations/new, /organizations/<id> (live), /pipeline (live).

    The form writes only with the web port's credential (PIPELINE_WEB_AUTH_TOKEN, signed in
    at /login, or PIPELINE_WEB_AUTH_PROXY_HEADER set by a trusted proxy).
    """
    from aiohttp import web

    from pipeline.console import app as console_app
    from pipeline.console.guard import Guard

    env = os.environ
    try:
        settings = load_settings()
    except ConfigError as exc:
        raise _fail(str(exc)) from exc
    problems = webauth.problems(env)
    if problems:
        raise _fail("; ".join(problems))
    ui = (temporal_ui_url or env.get("PIPELINE_TEMPORAL_UI_URL", "")).strip().rstrip("/")
    if ui and urlsplit(ui).scheme not in {"http", "https"}:
        raise _fail(
            f"PIPELINE_TEMPORAL_UI_URL={ui!r}: give an http(s) address, e.g. http://host:8233"
        )
    listen = (
        port if port is not None else _port(env.get("PIPELINE_CONSOLE_PORT", str(DEFAULT_PORT)))
    )
    guard = Guard(webauth.from_env(env))
    if not guard.enabled:
        log.warning(
            "console: no %s nor %s: the form is read-only",
            webauth.TOKEN_VAR,
            webauth.PROXY_HEADER_VAR,
        )
    application = console_app.build(
        console_app.Console(settings, guard, ui or None, console_app.templates())
    )
    log.info("console listening on http://%s:%d", host, listen)
    web.run_app(application, host=host, port=listen, print=None, access_log=None)
