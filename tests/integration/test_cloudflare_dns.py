"""CloudflareDnsProvider against a local aiohttp server that answers like the v4 API."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest
from aiohttp import web
from temporalio.client import Client

from pipeline import events as ev
from pipeline.bootstrap.errors import DnsProviderError
from pipeline.bootstrap.inputs import Admin, BootstrapInput, RetryTuning
from pipeline.bootstrap.providers.dns import CloudflareDnsProvider
from pipeline.bootstrap.settings import BootstrapSettings
from pipeline.bootstrap.worker import build_worker
from pipeline.bootstrap.workflows import OrganizationBootstrapWorkflow

pytestmark = pytest.mark.integration

TOKEN = "test-token"
ZONE = "zone-123"
ORG = str(uuid.uuid4())


class FakeCloudflare:
    """The dns_records endpoints of one zone, with injectable failures."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, object]] = {}
        self.fail_next: list[int] = []
        self.calls: list[str] = []

    def app(self) -> web.Application:
        app = web.Application()
        base = f"/client/v4/zones/{ZONE}/dns_records"
        app.router.add_get(base, self.list)
        app.router.add_post(base, self.create)
        app.router.add_delete(base + "/{record_id}", self.delete)
        return app

    @staticmethod
    def _error(status: int, code: int, message: str) -> web.Response:
        body = {"success": False, "errors": [{"code": code, "message": message}], "result": None}
        return web.json_response(body, status=status)

    def _gate(self, request: web.Request) -> web.Response | None:
        self.calls.append(request.method)
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._error(403, 9109, "Invalid access token")
        if self.fail_next:
            return self._error(self.fail_next.pop(0), 1000, "injected failure")
        return None

    async def list(self, request: web.Request) -> web.Response:
        if (denied := self._gate(request)) is not None:
            return denied
        name = request.query.get("name")
        found = [r for r in self.records.values() if name is None or r["name"] == name]
        return web.json_response({"success": True, "errors": [], "result": found})

    async def create(self, request: web.Request) -> web.Response:
        if (denied := self._gate(request)) is not None:
            return denied
        body = await request.json()
        if any(r["name"] == body["name"] for r in self.records.values()):
            return self._error(400, 81057, "Record already exists.")
        record = {**body, "id": uuid.uuid4().hex, "zone_id": ZONE}
        self.records[record["id"]] = record
        return web.json_response({"success": True, "errors": [], "result": record})

    async def delete(self, request: web.Request) -> web.Response:
        if (denied := self._gate(request)) is not None:
            return denied
        record_id = request.match_info["record_id"]
        if self.records.pop(record_id, None) is None:
            return self._error(404, 81044, "Record does not exist.")
        return web.json_response({"success": True, "errors": [], "result": {"id": record_id}})


@pytest.fixture
async def cloudflare() -> AsyncIterator[tuple[FakeCloudflare, str]]:
    fake = FakeCloudflare()
    runner = web.AppRunner(fake.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield fake, f"http://{host}:{port}/client/v4"
    finally:
        await runner.cleanup()


def provider(base_url: str, token: str = TOKEN) -> CloudflareDnsProvider:
    return CloudflareDnsProvider(token, ZONE, base_url, timeout_s=5.0)


async def test_create_is_idempotent_and_delete_removes(
    cloudflare: tuple[FakeCloudflare, str],
) -> None:
    fake, url = cloudflare
    dns = provider(url)
    first = await dns.create_record("acme.example.test", "CNAME", "example.test", ORG)
    again = await dns.create_record("acme.example.test", "CNAME", "example.test", ORG)
    assert again == first
    assert fake.calls.count("POST") == 1
    stored = fake.records[first.record_id]
    assert (stored["type"], stored["name"], stored["content"]) == (
        "CNAME",
        "acme.example.test",
        "example.test",
    )
    assert stored["comment"] == f"pipeline organization {ORG}"

    assert await dns.delete_record("acme.example.test", ORG) == first.record_id
    assert fake.records == {}
    assert await dns.delete_record("acme.example.test", ORG) is None


async def test_a_name_owned_by_someone_else_is_a_permanent_conflict_and_is_kept(
    cloudflare: tuple[FakeCloudflare, str],
) -> None:
    fake, url = cloudflare
    other = await provider(url).create_record("acme.example.test", "CNAME", "x.test", "someone")
    with pytest.raises(DnsProviderError) as err:
        await provider(url).create_record("acme.example.test", "CNAME", "example.test", ORG)
    assert err.value.retryable is False
    assert "belongs to someone else" in str(err.value)
    assert await provider(url).delete_record("acme.example.test", ORG) is None
    assert list(fake.records) == [other.record_id]


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (503, True), (429, True)])
async def test_server_errors_and_throttling_are_retryable(
    cloudflare: tuple[FakeCloudflare, str], status: int, retryable: bool
) -> None:
    fake, url = cloudflare
    fake.fail_next = [status]
    with pytest.raises(DnsProviderError) as err:
        await provider(url).create_record("acme.example.test", "CNAME", "example.test", ORG)
    assert err.value.retryable is retryable
    assert f"HTTP {status}" in str(err.value)


@pytest.mark.parametrize("status", [400, 404, 422])
async def test_client_errors_are_permanent(
    cloudflare: tuple[FakeCloudflare, str], status: int
) -> None:
    fake, url = cloudflare
    fake.fail_next = [status]
    with pytest.raises(DnsProviderError) as err:
        await provider(url).create_record("acme.example.test", "CNAME", "example.test", ORG)
    assert err.value.retryable is False


async def test_bad_token_is_permanent(cloudflare: tuple[FakeCloudflare, str]) -> None:
    _, url = cloudflare
    with pytest.raises(DnsProviderError) as err:
        await provider(url, token="wrong").create_record("a.example.test", "CNAME", "x.test", ORG)
    assert err.value.retryable is False
    assert "Invalid access token" in str(err.value)


async def test_unreachable_api_is_retryable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DnsProviderError) as err:
        await provider(f"http://127.0.0.1:{port}/client/v4").create_record(
            "a.example.test", "CNAME", "x.test", ORG
        )
    assert err.value.retryable is True


async def test_bootstrap_through_cloudflare_retries_5xx_and_completes(
    cloudflare: tuple[FakeCloudflare, str], temporal_client: Client, fresh_db: str, tmp_path: Path
) -> None:
    fake, url = cloudflare
    fake.fail_next = [503, 502]
    settings = BootstrapSettings(
        database_url=fresh_db,
        task_queue=f"cf-{uuid.uuid4()}",
        dns_provider="cloudflare",
        cloudflare_api_token=TOKEN,
        cloudflare_zone_id=ZONE,
        cloudflare_base_url=url,
        email_outbox_dir=tmp_path,
        retry=RetryTuning(initial_interval_ms=100, maximum_interval_ms=200),
    )
    org_id = str(uuid.uuid4())
    request = BootstrapInput(
        org_id, str(uuid.uuid4()), "Acme", "acme", [Admin("alice@example.org", "admin")]
    )
    async with build_worker(temporal_client, settings):  # providers from the settings
        result = await asyncio.wait_for(
            temporal_client.execute_workflow(
                OrganizationBootstrapWorkflow.run,
                request,
                id=ev.workflow_id_for(org_id),
                task_queue=settings.task_queue,
            ),
            120,
        )
    assert result.status == "completed", result
    [record] = fake.records.values()
    assert record["name"] == "acme.example.test"
    with psycopg.connect(fresh_db) as conn:
        row = conn.execute(
            "SELECT event_data FROM domain_events WHERE event_type = %s", (ev.DNS_RECORD_CREATED,)
        ).fetchone()
    assert row is not None
    assert row[0]["provider"] == "cloudflare" and row[0]["record_id"] == record["id"]
