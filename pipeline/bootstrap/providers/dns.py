"""DNS providers: where an organization's ``{subdomain}.{base_domain}`` record is published.

Both providers make ``create_record`` idempotent by name (a retried activity finds the
record its first attempt made) and scope ``delete_record`` to the owning organization,
so compensating a bootstrap that lost a name to another organization never deletes the
other organization's record.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import httpx
import psycopg

from pipeline.bootstrap.errors import DnsProviderError
from pipeline.bootstrap.pool import ConnectionPool

logger = logging.getLogger(__name__)

# Statuses worth retrying: the request may succeed later without any change on our side.
_RETRYABLE_STATUS = frozenset({408, 425, 429})


@dataclass(frozen=True, slots=True)
class DnsRecord:
    """A published record, with the provider's own id."""

    record_id: str
    fqdn: str
    record_type: str
    content: str


class DnsProvider(Protocol):
    """Publishes and removes an organization's DNS record."""

    @property
    def name(self) -> str:
        """Short provider name recorded in ``organization.dns.created``."""
        ...

    async def create_record(
        self, fqdn: str, record_type: str, content: str, organization_id: str
    ) -> DnsRecord:
        """Publish the record, or return it when this organization already has it."""
        ...

    async def delete_record(self, fqdn: str, organization_id: str) -> str | None:
        """Remove the organization's record; return its id, or None when there was none."""
        ...


class LocalDnsProvider:
    """Rows in the ``dns_records`` table: the demo's and the tests' stand-in for a DNS API."""

    name = "local"

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    async def create_record(
        self, fqdn: str, record_type: str, content: str, organization_id: str
    ) -> DnsRecord:
        """Insert the record unless the name exists; a name owned by another org is final."""
        try:
            async with self._pool.connection() as conn, conn.transaction():
                await conn.execute(
                    "INSERT INTO dns_records (fqdn, record_type, content, organization_id) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT (fqdn) DO NOTHING",
                    (fqdn, record_type, content, organization_id),
                )
                cur = await conn.execute(
                    "SELECT record_id::text, record_type, content, organization_id::text "
                    "FROM dns_records WHERE fqdn = %s",
                    (fqdn,),
                )
                row = await cur.fetchone()
        except psycopg.OperationalError as exc:
            raise DnsProviderError(f"dns_records unreachable: {exc}", retryable=True) from exc
        if row is None:
            # Deleted between our INSERT and SELECT by a concurrent compensation.
            raise DnsProviderError(f"{fqdn} vanished while being created", retryable=True)
        record_id, existing_type, existing_content, owner = row
        if owner != organization_id or (existing_type, existing_content) != (record_type, content):
            raise DnsProviderError(
                f"{fqdn} already exists for organization {owner} "
                f"({existing_type} {existing_content})",
                retryable=False,
            )
        return DnsRecord(record_id, fqdn, record_type, content)

    async def delete_record(self, fqdn: str, organization_id: str) -> str | None:
        """Delete the organization's row for ``fqdn``, if any."""
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(
                    "DELETE FROM dns_records WHERE fqdn = %s AND organization_id = %s "
                    "RETURNING record_id::text",
                    (fqdn, organization_id),
                )
                row = await cur.fetchone()
        except psycopg.OperationalError as exc:
            raise DnsProviderError(f"dns_records unreachable: {exc}", retryable=True) from exc
        return None if row is None else str(row[0])


def _owner_comment(organization_id: str) -> str:
    return f"pipeline organization {organization_id}"


class CloudflareDnsProvider:
    """The Cloudflare v4 API. Records carry their owner in ``comment``.

    Status codes decide the retry: 408/425/429 and 5xx (and transport errors) may pass
    later, any other 4xx means the request or the credentials are wrong.
    """

    name = "cloudflare"

    def __init__(
        self, api_token: str, zone_id: str, base_url: str, *, timeout_s: float = 10.0
    ) -> None:
        self._zone_url = f"{base_url.rstrip('/')}/zones/{zone_id}/dns_records"
        self._headers = {"Authorization": f"Bearer {api_token}"}
        self._timeout = httpx.Timeout(timeout_s)

    async def create_record(
        self, fqdn: str, record_type: str, content: str, organization_id: str
    ) -> DnsRecord:
        """Return this organization's existing record for the name, or POST a new one."""
        async with self._client() as client:
            existing = await self._find(client, fqdn)
            if existing is None:
                body = {
                    "type": record_type,
                    "name": fqdn,
                    "content": content,
                    "ttl": 1,
                    "proxied": False,
                    "comment": _owner_comment(organization_id),
                }
                result = await self._call(client, "POST", self._zone_url, json=body)
                existing = result if isinstance(result, Mapping) else None
        if existing is None:
            raise DnsProviderError(
                f"cloudflare: no record in the answer for {fqdn}", retryable=False
            )
        record = _record(existing)
        if existing.get("comment") != _owner_comment(organization_id) or (
            record.record_type,
            record.content,
        ) != (record_type, content):
            raise DnsProviderError(
                f"cloudflare: {fqdn} already exists and belongs to someone else "
                f"({record.record_type} {record.content}, comment {existing.get('comment')!r})",
                retryable=False,
            )
        return record

    async def delete_record(self, fqdn: str, organization_id: str) -> str | None:
        """Delete the organization's record for the name; a 404 means it is already gone."""
        async with self._client() as client:
            existing = await self._find(client, fqdn)
            if existing is None or existing.get("comment") != _owner_comment(organization_id):
                return None
            record_id = str(existing["id"])
            await self._call(client, "DELETE", f"{self._zone_url}/{record_id}", missing_ok=True)
        return record_id

    def _client(self) -> httpx.AsyncClient:
        # A client per operation: a bootstrap makes a handful of calls, and nothing has to
        # be closed when the worker stops.
        return httpx.AsyncClient(headers=self._headers, timeout=self._timeout)

    async def _find(self, client: httpx.AsyncClient, fqdn: str) -> Mapping[str, object] | None:
        result = await self._call(client, "GET", self._zone_url, params={"name": fqdn})
        records = [r for r in result if isinstance(r, Mapping)] if isinstance(result, list) else []
        return records[0] if records else None

    async def _call(
        self,
        client: httpx.AsyncClient,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Mapping[str, object] | None = None,
        missing_ok: bool = False,
    ) -> object:
        try:
            response = await client.request(method, url, params=params, json=json)
        except httpx.TransportError as exc:
            raise DnsProviderError(f"cloudflare: {method} {url}: {exc!r}", retryable=True) from exc
        if missing_ok and response.status_code == 404:
            return None
        try:
            payload = response.json()
        except ValueError:
            payload = None
        ok = isinstance(payload, Mapping) and payload.get("success") is True
        if response.is_success and ok and isinstance(payload, Mapping):
            return payload.get("result")
        status = response.status_code
        retryable = status >= 500 or status in _RETRYABLE_STATUS
        errors = payload.get("errors") if isinstance(payload, Mapping) else response.text[:200]
        logger.warning("cloudflare %s %s -> %s retryable=%s", method, url, status, retryable)
        raise DnsProviderError(
            f"cloudflare: {method} -> HTTP {status}: {errors}", retryable=retryable
        )


def _record(raw: Mapping[str, object]) -> DnsRecord:
    try:
        return DnsRecord(
            record_id=str(raw["id"]),
            fqdn=str(raw["name"]),
            record_type=str(raw["type"]),
            content=str(raw["content"]),
        )
    except KeyError as exc:
        raise DnsProviderError(f"cloudflare: record without {exc}", retryable=False) from exc
