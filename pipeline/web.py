"""What the pipeline's web port serves besides Faust's pages and ``/metrics``.

:func:`install` adds, to the aiohttp application under Faust's web server, the write
protection of :mod:`pipeline.webauth` (for every page, present and future) and the
invitation accept page (:mod:`pipeline.invitations.pages`), which authenticates its
writes with the invitation token itself.
"""

from __future__ import annotations

from collections.abc import Mapping

import faust
from aiohttp import web

from pipeline import webauth
from pipeline.invitations.pages import ACCEPT_PATH, add_routes

# Pages that authorise their writes themselves (see pipeline/webauth.py).
SELF_AUTHENTICATED = frozenset({ACCEPT_PATH})


def install(app: faust.App, dsn: str, env: Mapping[str, str]) -> None:
    """Protect every write action of ``app``'s web server and add the accept page."""
    web_app = getattr(app.web, "web_app", None)
    if not isinstance(web_app, web.Application):
        raise RuntimeError("the Faust web driver is not aiohttp: cannot add the pipeline's pages")
    web_app.middlewares.append(
        webauth.middleware(webauth.from_env(env), SELF_AUTHENTICATED)  # type: ignore[arg-type]
    )
    add_routes(web_app, dsn)
