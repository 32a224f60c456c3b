"""The console's aiohttp application: pages, form handling and streams.

Pages are rendered on the server from jinja2 templates (autoescaped) and readable without
JavaScript; the live parts are pushed over server-sent events (:mod:`.live`). Every
response forbids framing and caching and sends no Referer; no page shows a secret.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import jinja2
import psycopg
from aiohttp import web

from pipeline import deadletters, status, trace
from pipeline import events as ev
from pipeline.config import Settings
from pipeline.console import form, guard, live
from pipeline.contract import default_contract
from pipeline.eventstore import emit

log = logging.getLogger(__name__)

HERE: Final = Path(__file__).resolve().parent
HEADERS: Final = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
}
DEAD_LETTERS_SHOWN: Final = 20
RECORD_BYTES_SHOWN: Final = 16384


@dataclass(frozen=True, slots=True)
class Console:
    """What the handlers need: settings, the write guard, the Temporal UI's address."""

    settings: Settings
    guard: guard.Guard
    temporal_ui: str | None
    templates: jinja2.Environment

    def page(self, name: str, status_code: int = 200, **context: Any) -> web.Response:
        html = self.templates.get_template(name).render(**context)
        return web.Response(
            status=status_code, text=html, content_type="text/html", headers=dict(HEADERS)
        )

    def temporal_link(self, workflow_id: str) -> str | None:
        if not self.temporal_ui:
            return None
        namespace = quote(self.settings.temporal_namespace, safe="")
        return f"{self.temporal_ui}/namespaces/{namespace}/workflows/{quote(workflow_id, safe='')}"

    def render_chain(self, chain: trace.Chain) -> str:
        return self.templates.get_template("chain.html").render(
            chain=chain, temporal_link=self.temporal_link(chain.workflow_id)
        )

    async def render_status(self) -> str:
        report = await status.gather(self.settings)
        dead: list[deadletters.Entry] = []
        if "postgres" not in report["unavailable"]:
            try:
                dead = await _dead_letters(self.settings.database_url.get_secret_value())
            except psycopg.Error as exc:
                log.warning("console: cannot list dead letters: %s", exc)
        return self.templates.get_template("status.html").render(
            report=report,
            dead=dead,
            read_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        )


async def _dead_letters(dsn: str) -> list[deadletters.Entry]:
    """The newest dead letters not redriven (``pipeline dead-letters list``'s rows)."""

    def read() -> list[deadletters.Entry]:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
            return deadletters.fetch_entries(conn, everything=False)

    entries = await asyncio.to_thread(read)
    return entries[-DEAD_LETTERS_SHOWN:][::-1]


_DEAD_LETTER_SQL: Final = (
    "SELECT dead_letter_key, source, reason_kind, reason, commit_lsn::text, idx, "
    "event_id::text, original_topic, original_partition, original_offset, published, "
    "attempts, last_error, redriven_at::text, created_at::text, record_value "
    "FROM pipeline_dead_letters WHERE dead_letter_key = %s"
)
_DEAD_LETTER_FIELDS: Final = (
    "key",
    "source",
    "reason_kind",
    "reason",
    "commit_lsn",
    "idx",
    "event_id",
    "topic",
    "partition",
    "offset",
    "published",
    "attempts",
    "last_error",
    "redriven_at",
    "created_at",
)


def _with_csrf(request: web.Request, response: web.Response, csrf: str) -> None:
    guard.set_cookie(response, request, guard.CSRF_COOKIE, csrf)


async def _subdomain_taken(conn: psycopg.AsyncConnection[Any], org: form.NewOrganization) -> bool:
    cur = await conn.execute(
        "SELECT 1 FROM organizations_projection WHERE subdomain = %s AND id <> %s",
        (org.subdomain, org.org_id),
    )
    return await cur.fetchone() is not None


def _org_id(request: web.Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["org_id"])
    except ValueError:
        raise web.HTTPNotFound(text="404 no such organization id\n") from None


def build(console: Console) -> web.Application:
    """The console's application: routes and the write guard."""
    app = web.Application(middlewares=[guard.middleware(console.guard)])  # type: ignore[list-item]
    contract = default_contract()
    dsn = console.settings.database_url.get_secret_value()

    async def index(_: web.Request) -> web.Response:
        raise web.HTTPSeeOther("/pipeline")

    async def login_page(request: web.Request) -> web.Response:
        csrf = console.guard.csrf_for(request)
        response = console.page(
            "login.html",
            title="Sign in",
            csrf=csrf,
            next=_next(request.query.get("next")),
            enabled=console.guard.auth.token is not None,
            proxy_header=console.guard.auth.proxy_header
            if console.guard.auth.token is None
            else None,
            error=None,
        )
        _with_csrf(request, response, csrf)
        return response

    async def login(request: web.Request) -> web.Response:
        data = await request.post()
        token = data.get("token")
        target = _next(str(data.get("next", "")))
        if isinstance(token, str) and console.guard.token_matches(token):
            response = web.HTTPSeeOther(target)
            session = console.guard.session_value()
            assert session is not None
            guard.set_cookie(response, request, guard.SESSION_COOKIE, session)
            raise response
        csrf = console.guard.csrf_for(request)
        log.info("console: sign-in refused from %s", request.remote)
        return console.page(
            "login.html",
            401,
            title="Sign in",
            csrf=csrf,
            next=target,
            enabled=True,
            proxy_header=None,
            error="wrong token",
        )

    def show_form(
        request: web.Request, org: form.NewOrganization, errors: form.Errors, code: int = 200
    ) -> web.Response:
        csrf = console.guard.csrf_for(request)
        response = console.page(
            "new.html", code, title="New organization", org=org, errors=errors.by_field, csrf=csrf
        )
        _with_csrf(request, response, csrf)
        return response

    async def new_organization(request: web.Request) -> web.Response:
        if not console.guard.signed_in(request) and console.guard.auth.token is not None:
            raise web.HTTPSeeOther(f"{guard.LOGIN_PATH}?next=/organizations/new")
        return show_form(request, form.NewOrganization(org_id=uuid.uuid4()), form.Errors())

    async def create_organization(request: web.Request) -> web.Response:
        data = await request.post()
        fields = {k: v for k, v in data.items() if isinstance(v, str)}
        emails = [v for v in data.getall("admin_email", []) if isinstance(v, str)]
        roles = [v for v in data.getall("admin_role", []) if isinstance(v, str)]
        org = form.parse(fields, emails, roles)
        errors = form.validate(org, contract)
        if errors:
            return show_form(request, org, errors, 422)
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            if await _subdomain_taken(conn, org):
                errors.add("subdomain", f"{org.subdomain!r} is taken by another organization")
                return show_form(request, org, errors, 422)
            event_id = await emit(conn, org.event())
        log.info(
            "console: bootstrap requested organization_id=%s event_id=%s subdomain=%s",
            org.org_id,
            event_id,
            org.subdomain,
        )
        raise web.HTTPSeeOther(f"/organizations/{org.org_id}")

    async def organization(request: web.Request) -> web.Response:
        org_id = _org_id(request)
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            chain = await trace.load(conn, org_id)
        return console.page(
            "organization.html",
            title=f"Bootstrap of {_name(chain) or org_id}",
            chain=chain,
            temporal_link=console.temporal_link(chain.workflow_id),
        )

    async def organization_events(request: web.Request) -> web.StreamResponse:
        return await live.chain_stream(request, dsn, _org_id(request), console.render_chain)

    async def pipeline_page(_: web.Request) -> web.Response:
        return console.page(
            "pipeline.html", title="Pipeline", status_html=await console.render_status()
        )

    async def pipeline_events(request: web.Request) -> web.StreamResponse:
        return await live.status_stream(request, console.render_status)

    async def dead_letter(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            row = await (await conn.execute(_DEAD_LETTER_SQL, (key,))).fetchone()
        if row is None:
            raise web.HTTPNotFound(text=f"404 no dead letter {key!r}\n")
        value = bytes(row[-1] or b"")
        return console.page(
            "dead_letter.html",
            title=f"Dead letter {key}",
            key=key,
            fields=list(zip(_DEAD_LETTER_FIELDS, row[:-1], strict=True)),
            size=len(value),
            value=value[:RECORD_BYTES_SHOWN].decode(errors="replace"),
        )

    app.router.add_get("/", index)
    app.router.add_get(guard.LOGIN_PATH, login_page)
    app.router.add_post(guard.LOGIN_PATH, login)
    app.router.add_get("/organizations/new", new_organization)
    app.router.add_post("/organizations", create_organization)
    app.router.add_get("/organizations/{org_id}", organization)
    app.router.add_get("/organizations/{org_id}/events", organization_events)
    app.router.add_get("/pipeline", pipeline_page)
    app.router.add_get("/pipeline/events", pipeline_events)
    app.router.add_get("/dead-letters/{key:.+}", dead_letter)
    app.router.add_static("/static", HERE / "static")
    return app


def _name(chain: trace.Chain) -> str | None:
    """The organization's name, from its ``initiated`` event (the projection may lag)."""
    for event in chain.events:
        name = event.data.get("name")
        if event.event_type == ev.BOOTSTRAP_INITIATED and isinstance(name, str):
            return name
    return None


def _next(raw: str | None) -> str:
    """A redirect target on this site only (no open redirect)."""
    if raw and raw.startswith("/") and not raw.startswith("//"):
        return raw
    return "/organizations/new"


def templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
