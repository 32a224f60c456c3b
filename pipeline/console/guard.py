"""Who may write through the console, and CSRF protection of its forms.

The credential is the one of :mod:`pipeline.webauth` (the pipeline's web port):
``PIPELINE_WEB_AUTH_TOKEN`` (Secret) or ``PIPELINE_WEB_AUTH_PROXY_HEADER`` (a trusted
authenticating proxy). A browser cannot send a bearer token with a form, so ``/login``
takes the token once and sets a session cookie holding an HMAC of it (never the token);
an ``Authorization: Bearer`` header or the proxy's header work as on the web port. With
neither configured every write is refused.

CSRF: every form carries a token that is also in a ``SameSite=Strict`` cookie; it is a
random nonce signed with a key derived from the auth token (or a per-process key), and a
write is refused (403) unless the form's and the cookie's tokens are equal and signed. A
request whose ``Origin`` names another host is refused too.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

from aiohttp import web

from pipeline import webauth

SESSION_COOKIE: Final = "pipeline_console_session"
CSRF_COOKIE: Final = "pipeline_console_csrf"
CSRF_FIELD: Final = "csrf"
LOGIN_PATH: Final = "/login"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _mac(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Guard:
    """The console's write protection: the web port's auth plus session and CSRF."""

    auth: webauth.WebAuth
    process_key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    @property
    def enabled(self) -> bool:
        """Whether any credential is configured (else writes are disabled)."""
        return self.auth.token is not None or self.auth.proxy_header is not None

    @property
    def _key(self) -> bytes:
        # Derived from the token when there is one, so every replica accepts the others'.
        token = self.auth.token
        return _mac(token.encode(), "csrf").encode() if token else self.process_key

    def session_value(self) -> str | None:
        token = self.auth.token
        return _mac(token.encode(), "pipeline-console-session") if token else None

    def token_matches(self, given: str) -> bool:
        token = self.auth.token
        return token is not None and hmac.compare_digest(given.strip().encode(), token.encode())

    def signed_in(self, request: web.Request) -> bool:
        """Whether the request carries the credential (header, proxy header or session)."""
        if self.auth.allows(request):
            return True
        expected = self.session_value()
        given = request.cookies.get(SESSION_COOKIE, "")
        return expected is not None and hmac.compare_digest(given.encode(), expected.encode())

    def new_csrf(self) -> str:
        nonce = secrets.token_urlsafe(18)
        return f"{nonce}.{_mac(self._key, nonce)}"

    def csrf_ok(self, cookie: str, form_value: str) -> bool:
        nonce, _, mac = cookie.partition(".")
        return (
            bool(nonce)
            and hmac.compare_digest(cookie.encode(), form_value.encode())
            and hmac.compare_digest(mac.encode(), _mac(self._key, nonce).encode())
        )

    def csrf_for(self, request: web.Request) -> str:
        """The request's CSRF token (its cookie's when valid, else a new one)."""
        cookie = request.cookies.get(CSRF_COOKIE, "")
        return cookie if cookie and self.csrf_ok(cookie, cookie) else self.new_csrf()


def set_cookie(response: web.StreamResponse, request: web.Request, name: str, value: str) -> None:
    response.set_cookie(
        name, value, httponly=True, samesite="Strict", secure=request.secure, path="/"
    )


def _foreign_origin(request: web.Request) -> bool:
    """The request names the site it came from, and it is another one. (``null``, sent
    under some referrer policies, names none: the CSRF token decides alone.)"""
    origin = request.headers.get("Origin", "null")
    return origin != "null" and urlsplit(origin).netloc != request.host


def middleware(guard: Guard) -> Callable[..., object]:
    """Refuse a write without CSRF token (403) or credential (401; ``/login`` excepted)."""

    @web.middleware
    async def protect(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method in webauth.SAFE_METHODS:
            return await handler(request)
        form = await request.post()
        given = form.get(CSRF_FIELD)
        if _foreign_origin(request) or not (
            isinstance(given, str) and guard.csrf_ok(request.cookies.get(CSRF_COOKIE, ""), given)
        ):
            return web.Response(
                status=403, text="403 the form has expired or came from another site: reload it\n"
            )
        if request.path == LOGIN_PATH or guard.signed_in(request):
            return await handler(request)
        if not guard.enabled:
            why = (
                f"write actions are disabled: set {webauth.TOKEN_VAR} or {webauth.PROXY_HEADER_VAR}"
            )
        else:
            why = f"authentication required: sign in at {LOGIN_PATH}"
        return web.Response(
            status=401, text=f"401 {why}\n", headers={"WWW-Authenticate": 'Bearer realm="pipeline"'}
        )

    return protect
