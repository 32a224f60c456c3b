"""Settings of the bootstrap worker, read once from ``PIPELINE_*`` variables.

``from_env`` validates everything before any I/O and reports every problem at once,
naming the variable and where it comes from in Kubernetes (ConfigMap for plain values,
Secret for credentials), as DESIGN.md invariant 7 asks.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import AliasChoices, BeforeValidator, Field, SecretBytes, SecretStr

from pipeline import eventloop
from pipeline.bootstrap.inputs import RetryTuning
from pipeline.bootstrap.validation import validate_hostname
from pipeline.envsettings import EnvSettings, flag, read
from pipeline.errors import ConfigError
from pipeline.invitations.tokens import MIN_KEY_BYTES
from pipeline.security import SOURCES, TemporalSecurity, temporal_security_from_env

DNS_PROVIDERS = frozenset({"local", "cloudflare"})
EMAIL_PROVIDERS = frozenset({"smtp", "local"})
# Only for settings built in code (tests): from_env requires PIPELINE_INVITATION_KEY.
# One key per process, so every worker of one test process derives the same tokens.
_PROCESS_INVITATION_KEY = secrets.token_bytes(MIN_KEY_BYTES)
# The worker's variables that come from the Secret; every other one from the ConfigMap.
_SECRETS = frozenset(
    {
        "PIPELINE_DATABASE_URL",
        "PIPELINE_WORKER_DATABASE_URL",
        "PIPELINE_CLOUDFLARE_API_TOKEN",
        "PIPELINE_SMTP_PASSWORD",
        "PIPELINE_INVITATION_KEY",
    }
)


def _number(parse: Callable[[str], float], what: str, minimum: float) -> BeforeValidator:
    """A number of at least ``minimum`` when read from the environment (a string)."""

    def check(value: object) -> object:
        if not isinstance(value, str):
            return value
        try:
            number = parse(value)
        except ValueError:
            raise ValueError(f"must be {what}, got {value!r}") from None
        if number < minimum:
            raise ValueError(f"must be at least {minimum}, got {number}")
        return number

    return BeforeValidator(check)


def _choice(allowed: frozenset[str]) -> BeforeValidator:
    def check(value: object) -> object:
        if not isinstance(value, str):
            return value
        if value.lower() not in allowed:
            choices = " or ".join(sorted(allowed))
            raise ValueError(f"must be {choices}, got {value.lower()!r}")
        return value.lower()

    return BeforeValidator(check)


def _hostname(value: object) -> object:
    return validate_hostname(value.lower()) if isinstance(value, str) else value


def _days(value: object) -> object:
    return timedelta(days=value) if isinstance(value, float) else value


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


Count = Annotated[int, _number(int, "an integer", 1)]
Seconds = Annotated[float, _number(float, "a number", 0.0)]


_RETRY = RetryTuning()


class _RetryEnv(EnvSettings):
    """``PIPELINE_BOOTSTRAP_*``: the workflow's retry and timeout knobs."""

    retry_initial_ms: Count = Field(
        _RETRY.initial_interval_ms, validation_alias="PIPELINE_BOOTSTRAP_RETRY_INITIAL_MS"
    )
    retry_backoff: Annotated[float, _number(float, "a number", 1.0)] = Field(
        _RETRY.backoff_coefficient, validation_alias="PIPELINE_BOOTSTRAP_RETRY_BACKOFF"
    )
    retry_max_ms: Count = Field(
        _RETRY.maximum_interval_ms, validation_alias="PIPELINE_BOOTSTRAP_RETRY_MAX_MS"
    )
    provider_max_attempts: Count = Field(
        _RETRY.provider_maximum_attempts,
        validation_alias="PIPELINE_BOOTSTRAP_PROVIDER_MAX_ATTEMPTS",
    )
    store_max_attempts: Count = Field(
        _RETRY.store_maximum_attempts, validation_alias="PIPELINE_BOOTSTRAP_STORE_MAX_ATTEMPTS"
    )
    activity_timeout_ms: Count = Field(
        _RETRY.start_to_close_timeout_ms, validation_alias="PIPELINE_BOOTSTRAP_ACTIVITY_TIMEOUT_MS"
    )

    def tuning(self) -> RetryTuning:
        return RetryTuning(
            initial_interval_ms=self.retry_initial_ms,
            backoff_coefficient=self.retry_backoff,
            maximum_interval_ms=self.retry_max_ms,
            provider_maximum_attempts=self.provider_max_attempts,
            store_maximum_attempts=self.store_max_attempts,
            start_to_close_timeout_ms=self.activity_timeout_ms,
        )


class BootstrapSettings(EnvSettings):
    """Everything the worker needs, each field from the variable its alias names.

    Credentials are ``SecretStr``/``SecretBytes``: kept out of ``repr`` (and so out of logs);
    the code that connects or signs calls ``.get_secret_value()``.
    """

    # The worker's own role (pipeline_worker, sql/roles.sql) when set.
    database_url: SecretStr = Field(
        validation_alias=AliasChoices("PIPELINE_WORKER_DATABASE_URL", "PIPELINE_DATABASE_URL")
    )
    temporal_address: str = Field("127.0.0.1:7233", validation_alias="PIPELINE_TEMPORAL_ADDRESS")
    temporal_namespace: str = Field("default", validation_alias="PIPELINE_TEMPORAL_NAMESPACE")
    task_queue: str = Field("org-bootstrap", validation_alias="PIPELINE_TEMPORAL_TASK_QUEUE")
    base_domain: Annotated[str, BeforeValidator(_hostname)] = Field(
        "example.test", validation_alias="PIPELINE_BASE_DOMAIN"
    )
    dns_provider: Annotated[str, _choice(DNS_PROVIDERS)] = Field(
        "local", validation_alias="PIPELINE_DNS_PROVIDER"
    )
    dns_record_type: Annotated[str, BeforeValidator(_upper)] = Field(
        "CNAME", validation_alias="PIPELINE_DNS_RECORD_TYPE"
    )
    # Where the organization's name points; empty means the base domain itself.
    dns_record_content: str = Field("", validation_alias="PIPELINE_DNS_RECORD_CONTENT")
    cloudflare_api_token: SecretStr | None = Field(
        None, validation_alias="PIPELINE_CLOUDFLARE_API_TOKEN"
    )
    cloudflare_zone_id: str | None = Field(None, validation_alias="PIPELINE_CLOUDFLARE_ZONE_ID")
    cloudflare_base_url: str = Field(
        "https://api.cloudflare.com/client/v4", validation_alias="PIPELINE_CLOUDFLARE_BASE_URL"
    )
    email_provider: Annotated[str, _choice(EMAIL_PROVIDERS)] = Field(
        "local", validation_alias="PIPELINE_EMAIL_PROVIDER"
    )
    smtp_host: str = Field("127.0.0.1", validation_alias="PIPELINE_SMTP_HOST")
    smtp_port: Count = Field(25, validation_alias="PIPELINE_SMTP_PORT")
    smtp_from: str = Field("no-reply@example.test", validation_alias="PIPELINE_SMTP_FROM")
    smtp_starttls: Annotated[bool, BeforeValidator(flag)] = Field(
        False, validation_alias="PIPELINE_SMTP_STARTTLS"
    )
    smtp_username: str | None = Field(None, validation_alias="PIPELINE_SMTP_USERNAME")
    smtp_password: SecretStr | None = Field(None, validation_alias="PIPELINE_SMTP_PASSWORD")
    smtp_timeout_s: Annotated[float, _number(float, "a number", 0.1)] = Field(
        10.0, validation_alias="PIPELINE_SMTP_TIMEOUT_S"
    )
    email_outbox_dir: Path = Field(
        Path(".cache/outbox"), validation_alias="PIPELINE_EMAIL_OUTBOX_DIR"
    )
    # Empty means ``https://{fqdn}/invitations/accept`` (the organization's own site).
    invitation_accept_url: str = Field("", validation_alias="PIPELINE_INVITATION_ACCEPT_URL")
    invitation_ttl: Annotated[
        timedelta, BeforeValidator(_days), _number(float, "a number", 0.001)
    ] = Field(timedelta(days=7), validation_alias="PIPELINE_INVITATION_TTL_DAYS")
    # The HMAC key invitation tokens are derived with (pipeline/invitations/tokens.py).
    invitation_key: SecretBytes = Field(
        SecretBytes(_PROCESS_INVITATION_KEY), validation_alias="PIPELINE_INVITATION_KEY"
    )
    graceful_shutdown_s: Seconds = Field(
        30.0, validation_alias="PIPELINE_WORKER_GRACEFUL_SHUTDOWN_S"
    )
    retry: RetryTuning = Field(default_factory=RetryTuning)
    # Its API key is a SecretStr: model_dump / model_dump_json show it as **********.
    temporal_security: TemporalSecurity = Field(default_factory=TemporalSecurity)

    @property
    def dns_target(self) -> str:
        """The content of the organization's DNS record."""
        return self.dns_record_content or self.base_domain

    def accept_url(self, fqdn: str, token: str) -> str:
        """The link an invited admin follows to accept."""
        base = self.invitation_accept_url or f"https://{fqdn}/invitations/accept"
        return f"{base}?token={token}"


def _line(name: str, message: str) -> str:
    if name == "PIPELINE_WORKER_DATABASE_URL" and message == "is not set":
        name = "PIPELINE_DATABASE_URL"  # the one every deployment sets
    if message == "is not set":
        message = "is required"
    where = SOURCES.get(name) or ("Secret" if name in _SECRETS else "ConfigMap")
    return f"{name} {message} ({where})"


def _env_problems(env: Mapping[str, str]) -> list[str]:
    """What the environment must hold beyond each value's own shape."""
    problems = []
    text = {name: env.get(name, "").strip() for name in env}
    if len(text.get("PIPELINE_INVITATION_KEY", "").encode()) < MIN_KEY_BYTES:
        problems.append(
            f"PIPELINE_INVITATION_KEY is required: at least {MIN_KEY_BYTES} bytes of random"
            " text, e.g. `openssl rand -base64 48` (Secret)"
        )
    if text.get("PIPELINE_DNS_PROVIDER", "").lower() == "cloudflare":
        for name, where in (
            ("PIPELINE_CLOUDFLARE_API_TOKEN", "Secret"),
            ("PIPELINE_CLOUDFLARE_ZONE_ID", "ConfigMap"),
        ):
            if not text.get(name):
                problems.append(
                    f"{name} is required when PIPELINE_DNS_PROVIDER=cloudflare ({where})"
                )
    if text.get("PIPELINE_SMTP_USERNAME") and not text.get("PIPELINE_SMTP_PASSWORD"):
        problems.append("PIPELINE_SMTP_PASSWORD is required with PIPELINE_SMTP_USERNAME (Secret)")
    return problems


def from_env(env: Mapping[str, str]) -> BootstrapSettings:
    """Build and validate the settings; raise :class:`ConfigError` listing every problem."""
    secure: list[tuple[str, str]] = []
    temporal_security = temporal_security_from_env(env, secure)
    retry, found = read(_RetryEnv, env)
    given: dict[str, Any] = {"temporal_security": temporal_security}
    if retry is not None:
        given["retry"] = retry.tuning()
    settings, invalid = read(BootstrapSettings, env, **given)
    problems = [_line(name, message) for name, message in [*invalid, *found]]
    problems += [
        f"{name}: {message} ({SOURCES.get(name, 'ConfigMap')})" for name, message in secure
    ]
    problems += _env_problems(env)
    problems += [_line(name, message) for name, message in eventloop.problems(env)]
    if problems:
        raise ConfigError("invalid bootstrap settings:\n  " + "\n  ".join(problems))
    assert settings is not None
    return settings
