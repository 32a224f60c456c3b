"""Server-sent events of the console: the page's live part, rendered on the server.

The server reads the event store (and the projections, or ``pipeline status``) and pushes
an ``update`` whenever what it renders changed; the browser only swaps the HTML in
(``static/console.js``): no polling loop in the browser. A bootstrap's stream sends
``done`` and ends once the job and the chain reached their end.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Final

import psycopg
from aiohttp import web

from pipeline import trace

log = logging.getLogger(__name__)

CHAIN_INTERVAL_S: Final = 0.25
STATUS_INTERVAL_S: Final = 3.0
MAX_STREAM_S: Final = 600.0  # the browser reconnects by itself after this
TERMINAL_QUEUE: Final = frozenset({"completed", "failed"})


def frame(event: str, html: str) -> bytes:
    """One SSE message: ``event:`` then the HTML as ``data:`` lines."""
    lines = [f"event: {event}"] + [f"data: {line}" for line in html.splitlines() or [""]]
    return ("\n".join(lines) + "\n\n").encode()


async def _open(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # a proxy must not buffer the stream
        }
    )
    await response.prepare(request)
    return response


def settled(chain: trace.Chain) -> bool:
    """The chain reached its end and the queue projection folded it."""
    queue = chain.queue or {}
    return chain.verdict.state != "incomplete" and queue.get("status") in TERMINAL_QUEUE


async def chain_stream(
    request: web.Request, dsn: str, org_id: uuid.UUID, render: Callable[[trace.Chain], str]
) -> web.StreamResponse:
    """Push the bootstrap page's live part until the bootstrap settled."""
    response = await _open(request)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + MAX_STREAM_S
    last = ""
    try:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            while loop.time() < deadline:
                chain = await trace.load(conn, org_id)
                html = render(chain)
                if html != last:
                    await response.write(frame("update", html))
                    last = html
                if settled(chain):
                    await response.write(frame("done", ""))
                    break
                await asyncio.sleep(CHAIN_INTERVAL_S)
    except ConnectionResetError:
        log.debug("console stream closed by the browser organization_id=%s", org_id)
    except psycopg.Error as exc:
        log.warning("console stream: PostgreSQL failed organization_id=%s: %s", org_id, exc)
    return response


async def status_stream(
    request: web.Request, render: Callable[[], Awaitable[str]]
) -> web.StreamResponse:
    """Push the pipeline page's live part every few seconds, when it changed."""
    response = await _open(request)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + MAX_STREAM_S
    last: Any = None
    try:
        while loop.time() < deadline:
            html = await render()
            if html != last:
                await response.write(frame("update", html))
                last = html
            await asyncio.sleep(STATUS_INTERVAL_S)
    except ConnectionResetError:
        log.debug("console status stream closed by the browser")
    return response
