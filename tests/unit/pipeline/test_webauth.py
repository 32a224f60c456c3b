"""Write actions on the web port need the configured credential (a real aiohttp server)."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pipeline import webauth

TOKEN = "t" * 40


async def client_for(auth: webauth.WebAuth) -> TestClient[web.Request, web.Application]:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="done")

    app = web.Application(middlewares=[webauth.middleware(auth, frozenset({"/self"}))])  # type: ignore[list-item]
    for path in ("/write", "/self"):
        app.router.add_get(path, ok)
        app.router.add_post(path, ok)
        app.router.add_delete(path, ok)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_without_configuration_every_write_is_refused_reads_pass() -> None:
    client = await client_for(webauth.WebAuth())
    try:
        assert (await client.get("/write")).status == 200
        refused = await client.post("/write", headers={"Authorization": f"Bearer {TOKEN}"})
        assert refused.status == 401
        assert "write actions are disabled" in await refused.text()
        assert (await client.delete("/write")).status == 401
        # A page that authenticates its writes itself.
        assert (await client.post("/self")).status == 200
    finally:
        await client.close()


async def test_bearer_token() -> None:
    client = await client_for(webauth.WebAuth(token=TOKEN))
    try:
        assert (await client.post("/write")).status == 401
        assert (await client.post("/write", headers={"Authorization": "Bearer nope"})).status == 401
        ok = await client.post("/write", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status == 200
        # The proxy header is not trusted unless configured.
        assert (await client.post("/write", headers={"X-Forwarded-User": "eve"})).status == 401
    finally:
        await client.close()


async def test_trusted_proxy_header() -> None:
    client = await client_for(webauth.WebAuth(proxy_header="X-Forwarded-User"))
    try:
        assert (await client.post("/write", headers={"X-Forwarded-User": "alice"})).status == 200
        assert (await client.post("/write", headers={"X-Forwarded-User": " "})).status == 401
        assert (await client.post("/write")).status == 401
    finally:
        await client.close()


def test_settings_are_validated() -> None:
    assert webauth.problems({}) == []
    assert webauth.problems({webauth.TOKEN_VAR: TOKEN, webauth.PROXY_HEADER_VAR: "X-User"}) == []
    short = webauth.problems({webauth.TOKEN_VAR: "short"})
    assert len(short) == 1 and "at least 32" in short[0] and "Secret" in short[0]
    assert "not an HTTP header name" in webauth.problems({webauth.PROXY_HEADER_VAR: "X User"})[0]
    auth = webauth.from_env({webauth.TOKEN_VAR: TOKEN})
    assert TOKEN not in repr(auth)
