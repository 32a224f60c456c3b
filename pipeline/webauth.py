"""Authentication of write actions on the pipeline's web port (``PIPELINE_WEB_PORT``).

Every request with a method that can change something (anything but GET, HEAD and
OPTIONS) is refused unless it is authenticated, whatever page it is for:

- ``PIPELINE_WEB_AUTH_TOKEN`` (Secret ``pipeline-secrets``): the request carries
  ``Authorization: Bearer <token>`` (compared in constant time);
- ``PIPELINE_WEB_AUTH_PROXY_HEADER`` (ConfigMap ``pipeline-config``), e.g.
  ``X-Forwarded-User``: a trusted authenticating proxy in front of the port sets this
  header to the signed-in user; a request with the header set (non-empty) is accepted.
  Only safe when the port is reachable through that proxy alone (which also strips the
  header from what clients send).

With neither configured every write action is refused. The one exception is a page that
authenticates its requests itself: ``POST /invitations/accept`` is authorised by the
invitation token in its form (the invitee has no other credential).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    # aiohttp's web is imported where the middleware is built: the settings read this
    # module too, and `pipeline run`'s reader process, which serves no page, would
    # otherwise carry aiohttp.web (~12 MiB resident) for two variable names.
    from aiohttp import web

TOKEN_VAR: Final = "PIPELINE_WEB_AUTH_TOKEN"
PROXY_HEADER_VAR: Final = "PIPELINE_WEB_AUTH_PROXY_HEADER"
MIN_TOKEN_CHARS: Final = 32
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,64}$")

Handler = Callable[["web.Request"], Awaitable["web.StreamResponse"]]


@dataclass(frozen=True, slots=True)
class WebAuth:
    """How a write action proves who sent it; neither set = every write is refused."""

    token: str | None = field(default=None, repr=False)
    proxy_header: str | None = None

    def allows(self, request: web.Request) -> bool:
        """Whether ``request`` carries the configured credential."""
        if self.token is not None:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() == "bearer" and hmac.compare_digest(
                given.strip().encode(), self.token.encode()
            ):
                return True
        if self.proxy_header is not None:
            return bool(request.headers.get(self.proxy_header, "").strip())
        return False


def problems(env: Mapping[str, str]) -> list[str]:
    """What is wrong with the web auth variables, for the settings' error list."""
    found: list[str] = []
    token = env.get(TOKEN_VAR, "").strip()
    if token and len(token) < MIN_TOKEN_CHARS:
        found.append(
            f"{TOKEN_VAR} (Secret pipeline-secrets): must be at least {MIN_TOKEN_CHARS} "
            "characters (e.g. `openssl rand -hex 32`)"
        )
    header = env.get(PROXY_HEADER_VAR, "").strip()
    if header and not _HEADER_NAME.match(header):
        found.append(
            f"{PROXY_HEADER_VAR} (ConfigMap pipeline-config): {header!r} is not an HTTP header name"
        )
    return found


def from_env(env: Mapping[str, str]) -> WebAuth:
    """The configured authentication (validate with :func:`problems` first)."""
    token = env.get(TOKEN_VAR, "").strip() or None
    header = env.get(PROXY_HEADER_VAR, "").strip() or None
    return WebAuth(token=token, proxy_header=header)


def middleware(auth: WebAuth, self_authenticated: frozenset[str]) -> Callable[..., object]:
    """An aiohttp middleware refusing unauthenticated writes, except on the given paths."""
    from aiohttp import web

    @web.middleware
    async def require_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if (
            request.method in SAFE_METHODS
            or request.path in self_authenticated
            or auth.allows(request)
        ):
            return await handler(request)
        if auth.token is None and auth.proxy_header is None:
            why = f"write actions are disabled: set {TOKEN_VAR} or {PROXY_HEADER_VAR}"
        else:
            why = "authentication required"
        return web.Response(
            status=401,
            text=f"401 {why}\n",
            headers={"WWW-Authenticate": 'Bearer realm="pipeline"'},
        )

    return require_auth
