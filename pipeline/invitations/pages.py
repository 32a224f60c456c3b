"""``/invitations/accept`` on the pipeline's web port: the page an emailed link opens.

``GET ?token=...`` shows the invitation's state and, when it can be accepted, a form that
POSTs the token back; only the POST writes. Every refusal (unknown or wrong token,
expired, revoked, already accepted) gets its own page and writes nothing. Responses are
never cached and send no Referer, so the token in the link does not travel further.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Final

from aiohttp import web

from pipeline.invitations.accept import Outcome, accept, check

ACCEPT_PATH: Final = "/invitations/accept"
MAX_TOKEN_CHARS: Final = 512
_HEADERS: Final = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}

_PAGES: Final[dict[Outcome, tuple[int, str, str]]] = {
    Outcome.VALID: (200, "Accept your invitation", "This invitation is valid."),
    Outcome.ACCEPTED: (200, "Invitation accepted", "Your invitation is accepted. Welcome!"),
    Outcome.ALREADY_ACCEPTED: (
        409,
        "Invitation already used",
        "This invitation has already been accepted; a link works only once.",
    ),
    Outcome.EXPIRED: (
        410,
        "Invitation expired",
        "This invitation has expired. Ask your organization for a new one.",
    ),
    Outcome.REVOKED: (
        410,
        "Invitation revoked",
        "This invitation was withdrawn and can no longer be accepted.",
    ),
    Outcome.UNKNOWN: (
        404,
        "Invitation not found",
        "This link is not a valid invitation. Check that the whole link was copied, "
        "or ask your organization for a new one.",
    ),
}


def render(outcome: Outcome, token: str = "") -> web.Response:
    """The page for ``outcome``; the VALID page carries the form that accepts."""
    status, title, text = _PAGES[outcome]
    form = ""
    if outcome is Outcome.VALID:
        form = (
            f'<form method="post" action="{ACCEPT_PATH}">'
            f'<input type="hidden" name="token" value="{html.escape(token, quote=True)}">'
            '<button type="submit">Accept invitation</button></form>'
        )
    body = (
        '<!doctype html><html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>{form}</body></html>"
    )
    return web.Response(status=status, text=body, content_type="text/html", headers=dict(_HEADERS))


def _token(raw: object) -> str:
    token = raw.strip() if isinstance(raw, str) else ""
    return token if len(token) <= MAX_TOKEN_CHARS else ""


def add_routes(web_app: web.Application, dsn: str) -> None:
    """Serve the accept page on ``web_app`` (the Faust web server's aiohttp app)."""

    async def show(request: web.Request) -> web.Response:
        token = _token(request.query.get("token"))
        return render(await check(dsn, token, datetime.now(UTC)), token)

    async def submit(request: web.Request) -> web.Response:
        form = await request.post()
        token = _token(form.get("token"))
        return render(await accept(dsn, token, datetime.now(UTC)))

    web_app.router.add_get(ACCEPT_PATH, show)
    web_app.router.add_post(ACCEPT_PATH, submit)
