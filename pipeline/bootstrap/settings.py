"""Settings of the bootstrap worker, read once from ``PIPELINE_*`` variables.

``from_env`` validates everything before any I/O and reports every problem at once,
naming the variable and where it comes from in Kubernetes (ConfigMap for plain values,
Secret for credentials), as DESIGN.md invariant 7 asks.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

from pipeline.bootstrap.inputs import RetryTuning
from pipeline.bootstrap.validation import validate_hostname
from pipeline.errors import ConfigError
from pipeline.invitations.tokens import MIN_KEY_BYTES
from pipeline.security import SOURCES, TemporalSecurity, temporal_security_from_env

DNS_PROVIDERS = frozenset({"local", "cloudflare"})
EMAIL_PROVIDERS = frozenset({"smtp", "local"})
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_T = TypeVar("_T")
# Only for settings built in code (tests): from_env requires PIPELINE_INVITATION_KEY.
# One key per process, so every worker of one test process derives the same tokens.
_PROCESS_INVITATION_KEY = secrets.token_bytes(MIN_KEY_BYTES)


@dataclass(frozen=True, slots=True)
class BootstrapSettings:
    """Everything the worker needs; secrets are kept out of ``repr`` (and so out of logs)."""

    database_url: str = field(repr=False)
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    task_queue: str = "org-bootstrap"
    base_domain: str = "example.test"
    dns_provider: str = "local"
    dns_record_type: str = "CNAME"
    # Where the organization's name points; empty means the base domain itself.
    dns_record_content: str = ""
    cloudflare_api_token: str | None = field(default=None, repr=False)
    cloudflare_zone_id: str | None = None
    cloudflare_base_url: str = "https://api.cloudflare.com/client/v4"
    email_provider: str = "local"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_from: str = "no-reply@example.test"
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_timeout_s: float = 10.0
    email_outbox_dir: Path = Path(".cache/outbox")
    # Empty means ``https://{fqdn}/invitations/accept`` (the organization's own site).
    invitation_accept_url: str = ""
    invitation_ttl: timedelta = timedelta(days=7)
    # The HMAC key invitation tokens are derived with (pipeline/invitations/tokens.py).
    invitation_key: bytes = field(default=_PROCESS_INVITATION_KEY, repr=False)
    graceful_shutdown_s: float = 30.0
    retry: RetryTuning = field(default_factory=RetryTuning)
    temporal_security: TemporalSecurity = field(default_factory=TemporalSecurity)

    @property
    def dns_target(self) -> str:
        """The content of the organization's DNS record."""
        return self.dns_record_content or self.base_domain

    def accept_url(self, fqdn: str, token: str) -> str:
        """The link an invited admin follows to accept."""
        base = self.invitation_accept_url or f"https://{fqdn}/invitations/accept"
        return f"{base}?token={token}"


class _EnvReader:
    """Reads typed values from the environment, collecting problems instead of raising."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def text(self, name: str, default: str) -> str:
        raw = self.env.get(name, "").strip()
        return raw or default

    def optional(self, name: str) -> str | None:
        raw = self.env.get(name, "").strip()
        return raw or None

    def parsed(self, name: str, default: _T, parse: Callable[[str], _T], what: str) -> _T:
        raw = self.env.get(name, "").strip()
        if not raw:
            return default
        try:
            return parse(raw)
        except ValueError:
            self.problems.append(f"{name} must be {what}, got {raw!r} (ConfigMap)")
            return default

    def number(self, name: str, default: int, minimum: int = 0) -> int:
        value = self.parsed(name, default, int, "an integer")
        if value < minimum:
            self.problems.append(f"{name} must be at least {minimum}, got {value} (ConfigMap)")
        return value

    def real(self, name: str, default: float, minimum: float = 0.0) -> float:
        value = self.parsed(name, default, float, "a number")
        if value < minimum:
            self.problems.append(f"{name} must be at least {minimum}, got {value} (ConfigMap)")
        return value

    def flag(self, name: str, default: bool) -> bool:
        def parse(raw: str) -> bool:
            if raw.lower() in _TRUE:
                return True
            if raw.lower() in _FALSE:
                return False
            raise ValueError(raw)

        return self.parsed(name, default, parse, "true or false")

    def choice(self, name: str, default: str, allowed: frozenset[str]) -> str:
        value = self.text(name, default).lower()
        if value not in allowed:
            choices = " or ".join(sorted(allowed))
            self.problems.append(f"{name} must be {choices}, got {value!r} (ConfigMap)")
        return value


def _retry_from_env(r: _EnvReader) -> RetryTuning:
    d = RetryTuning()
    return RetryTuning(
        initial_interval_ms=r.number(
            "PIPELINE_BOOTSTRAP_RETRY_INITIAL_MS", d.initial_interval_ms, 1
        ),
        backoff_coefficient=r.real("PIPELINE_BOOTSTRAP_RETRY_BACKOFF", d.backoff_coefficient, 1.0),
        maximum_interval_ms=r.number("PIPELINE_BOOTSTRAP_RETRY_MAX_MS", d.maximum_interval_ms, 1),
        provider_maximum_attempts=r.number(
            "PIPELINE_BOOTSTRAP_PROVIDER_MAX_ATTEMPTS", d.provider_maximum_attempts, 1
        ),
        store_maximum_attempts=r.number(
            "PIPELINE_BOOTSTRAP_STORE_MAX_ATTEMPTS", d.store_maximum_attempts, 1
        ),
        start_to_close_timeout_ms=r.number(
            "PIPELINE_BOOTSTRAP_ACTIVITY_TIMEOUT_MS", d.start_to_close_timeout_ms, 1
        ),
    )


def _temporal_security(r: _EnvReader) -> TemporalSecurity:
    """Temporal TLS / mTLS / API key, the same variables as ``pipeline run`` reads."""
    problems: list[tuple[str, str]] = []
    security = temporal_security_from_env(r.env, problems)
    r.problems.extend(
        f"{name}: {message} ({SOURCES.get(name, 'ConfigMap')})" for name, message in problems
    )
    return security


def from_env(env: Mapping[str, str]) -> BootstrapSettings:
    """Build and validate the settings; raise :class:`ConfigError` listing every problem."""
    r = _EnvReader(env)
    d = BootstrapSettings(database_url="")
    # The worker's own role (pipeline_worker, sql/roles.sql) when set.
    database_url = r.text("PIPELINE_WORKER_DATABASE_URL", "") or r.text("PIPELINE_DATABASE_URL", "")
    if not database_url:
        r.problems.append("PIPELINE_DATABASE_URL is required (Secret)")
    base_domain = r.text("PIPELINE_BASE_DOMAIN", d.base_domain).lower()
    try:
        validate_hostname(base_domain)
    except ValueError as exc:
        r.problems.append(f"PIPELINE_BASE_DOMAIN: {exc} (ConfigMap)")
    dns_provider = r.choice("PIPELINE_DNS_PROVIDER", d.dns_provider, DNS_PROVIDERS)
    token = r.optional("PIPELINE_CLOUDFLARE_API_TOKEN")
    zone = r.optional("PIPELINE_CLOUDFLARE_ZONE_ID")
    if dns_provider == "cloudflare":
        if token is None:
            r.problems.append(
                "PIPELINE_CLOUDFLARE_API_TOKEN is required when PIPELINE_DNS_PROVIDER=cloudflare"
                " (Secret)"
            )
        if zone is None:
            r.problems.append(
                "PIPELINE_CLOUDFLARE_ZONE_ID is required when PIPELINE_DNS_PROVIDER=cloudflare"
                " (ConfigMap)"
            )
    email_provider = r.choice("PIPELINE_EMAIL_PROVIDER", d.email_provider, EMAIL_PROVIDERS)
    ttl_days = r.real("PIPELINE_INVITATION_TTL_DAYS", d.invitation_ttl.days, 0.001)
    invitation_key = r.text("PIPELINE_INVITATION_KEY", "")
    if len(invitation_key.encode()) < MIN_KEY_BYTES:
        r.problems.append(
            f"PIPELINE_INVITATION_KEY is required: at least {MIN_KEY_BYTES} bytes of random"
            " text, e.g. `openssl rand -base64 48` (Secret)"
        )
    settings = BootstrapSettings(
        database_url=database_url,
        temporal_address=r.text("PIPELINE_TEMPORAL_ADDRESS", d.temporal_address),
        temporal_namespace=r.text("PIPELINE_TEMPORAL_NAMESPACE", d.temporal_namespace),
        task_queue=r.text("PIPELINE_TEMPORAL_TASK_QUEUE", d.task_queue),
        base_domain=base_domain,
        dns_provider=dns_provider,
        dns_record_type=r.text("PIPELINE_DNS_RECORD_TYPE", d.dns_record_type).upper(),
        dns_record_content=r.text("PIPELINE_DNS_RECORD_CONTENT", d.dns_record_content),
        cloudflare_api_token=token,
        cloudflare_zone_id=zone,
        cloudflare_base_url=r.text("PIPELINE_CLOUDFLARE_BASE_URL", d.cloudflare_base_url),
        email_provider=email_provider,
        smtp_host=r.text("PIPELINE_SMTP_HOST", d.smtp_host),
        smtp_port=r.number("PIPELINE_SMTP_PORT", d.smtp_port, 1),
        smtp_from=r.text("PIPELINE_SMTP_FROM", d.smtp_from),
        smtp_starttls=r.flag("PIPELINE_SMTP_STARTTLS", d.smtp_starttls),
        smtp_username=r.optional("PIPELINE_SMTP_USERNAME"),
        smtp_password=r.optional("PIPELINE_SMTP_PASSWORD"),
        smtp_timeout_s=r.real("PIPELINE_SMTP_TIMEOUT_S", d.smtp_timeout_s, 0.1),
        email_outbox_dir=Path(r.text("PIPELINE_EMAIL_OUTBOX_DIR", str(d.email_outbox_dir))),
        invitation_accept_url=r.text("PIPELINE_INVITATION_ACCEPT_URL", ""),
        invitation_ttl=timedelta(days=ttl_days),
        invitation_key=invitation_key.encode(),
        graceful_shutdown_s=r.real("PIPELINE_WORKER_GRACEFUL_SHUTDOWN_S", d.graceful_shutdown_s),
        retry=_retry_from_env(r),
        temporal_security=_temporal_security(r),
    )
    if settings.smtp_username is not None and settings.smtp_password is None:
        r.problems.append("PIPELINE_SMTP_PASSWORD is required with PIPELINE_SMTP_USERNAME (Secret)")
    if r.problems:
        raise ConfigError("invalid bootstrap settings:\n  " + "\n  ".join(r.problems))
    return settings
