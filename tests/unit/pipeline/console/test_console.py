"""The console's pure parts: the form checked against the real contract field by field,
and the write guard (credential + CSRF) on a real aiohttp server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pipeline import events as ev
from pipeline import webauth
from pipeline.console import form, guard
from pipeline.contract import default_contract

TOKEN = "t" * 40


def org(**changes: object) -> form.NewOrganization:
    values: dict[str, object] = {
        "org_id": uuid.uuid4(),
        "name": "Acme Health",
        "subdomain": "acme-health",
        "admins": (form.Admin("admin@acme.test", "organization_admin"),),
    }
    values.update(changes)
    return form.NewOrganization(**values)  # type: ignore[arg-type]


def test_a_valid_form_has_no_error_and_makes_the_stream_signature_event() -> None:
    new = org()
    assert not form.validate(new, default_contract())
    event = new.event()
    assert event.stream_id == new.org_id
    assert event.stream_type == ev.STREAM_TYPE_ORGANIZATION
    assert event.event_type == ev.BOOTSTRAP_INITIATED
    assert event.idempotency_key == f"console:{new.org_id}:{ev.BOOTSTRAP_INITIATED}"
    assert event.event_data["admins"] == [
        {"email": "admin@acme.test", "role": "organization_admin"}
    ]


def test_every_wrong_field_gets_its_own_message() -> None:
    bad = org(
        name="",
        subdomain="Not_A_Label!",
        admins=(
            form.Admin("admin@acme.test", "organization_admin"),
            form.Admin("not-an-email", "Admin Role"),
        ),
    )
    errors = form.validate(bad, default_contract()).by_field
    assert set(errors) == {"name", "subdomain", "admin_email_1", "admin_role_1"}
    assert "lower-case letters" in errors["subdomain"]
    assert "email" in errors["admin_email_1"]


def test_no_admin_is_an_error_of_the_admins_fieldset() -> None:
    errors = form.validate(org(admins=()), default_contract()).by_field
    assert set(errors) == {"admins"}


def test_parse_keeps_the_shown_org_id_and_drops_empty_admin_rows() -> None:
    org_id = uuid.uuid4()
    parsed = form.parse(
        {"org_id": str(org_id), "name": " Acme ", "subdomain": "acme"},
        ["a@acme.test", "", "b@acme.test"],
        ["", "", "provider_admin"],
    )
    assert parsed.org_id == org_id
    assert parsed.name == "Acme"
    assert parsed.admins == (
        form.Admin("a@acme.test", form.DEFAULT_ROLE),
        form.Admin("b@acme.test", "provider_admin"),
    )
    assert form.parse({"org_id": "garbage"}, [], []).org_id != org_id


def test_contract_paths_map_to_form_fields() -> None:
    assert form.field_of("event_data.subdomain") == "subdomain"
    assert form.field_of("event_data.admins[2].email") == "admin_email_2"
    assert form.field_of("event_data.admins[0].role", admin_index=4) == "admin_role_4"
    assert form.field_of("event_data.admins") == "admins"
    assert form.field_of("event_metadata.source") == "form"


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    keeper = guard.Guard(webauth.WebAuth(token=TOKEN))

    async def write(_: web.Request) -> web.Response:
        return web.Response(text="written")

    async def login(request: web.Request) -> web.Response:
        response = web.Response(text="signed in")
        session = keeper.session_value()
        assert session is not None
        guard.set_cookie(response, request, guard.SESSION_COOKIE, session)
        return response

    async def csrf(request: web.Request) -> web.Response:
        value = keeper.csrf_for(request)
        response = web.Response(text=value)
        guard.set_cookie(response, request, guard.CSRF_COOKIE, value)
        return response

    app = web.Application(middlewares=[guard.middleware(keeper)])  # type: ignore[list-item]
    app.router.add_post("/write", write)
    app.router.add_post(guard.LOGIN_PATH, login)
    app.router.add_get("/csrf", csrf)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def test_a_write_needs_the_csrf_token_then_the_credential(
    client: TestClient[web.Request, web.Application],
) -> None:
    assert (await client.post("/write", data={"x": "1"})).status == 403
    token = await (await client.get("/csrf")).text()
    assert (await client.post("/write", data={"csrf": "forged." + "0" * 64})).status == 403
    refused = await client.post("/write", data={"csrf": token})
    assert refused.status == 401
    assert "sign in" in await refused.text()
    bearer = await client.post(
        "/write", data={"csrf": token}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert bearer.status == 200
    # The sign-in page itself needs only the CSRF token; its cookie then authenticates.
    assert (await client.post(guard.LOGIN_PATH, data={"csrf": token})).status == 200
    assert (await client.post("/write", data={"csrf": token})).status == 200
    foreign = await client.post(
        "/write", data={"csrf": token}, headers={"Origin": "https://evil.example"}
    )
    assert foreign.status == 403


def test_the_session_cookie_is_no_copy_of_the_token_and_csrf_keys_agree() -> None:
    one = guard.Guard(webauth.WebAuth(token=TOKEN))
    other = guard.Guard(webauth.WebAuth(token=TOKEN))  # another replica
    session = one.session_value()
    assert session is not None and TOKEN not in session
    value = one.new_csrf()
    assert other.csrf_ok(value, value)
    assert not guard.Guard(webauth.WebAuth(token="u" * 40)).csrf_ok(value, value)
    assert not guard.Guard(webauth.WebAuth()).enabled
