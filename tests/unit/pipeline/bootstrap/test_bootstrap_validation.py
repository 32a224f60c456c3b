"""Pure parts of the bootstrap: request validation, settings, the email, retry decisions."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from temporalio.exceptions import ApplicationError

from pipeline.bootstrap.errors import DnsProviderError, EmailProviderError, InvalidBootstrapInput
from pipeline.bootstrap.inputs import Admin, BootstrapInput, Invitation
from pipeline.bootstrap.messages import render_invitation_email
from pipeline.bootstrap.providers.email import to_mime
from pipeline.bootstrap.retry import classified
from pipeline.bootstrap.settings import BootstrapSettings, from_env
from pipeline.bootstrap.validation import validate_bootstrap, validate_email, validate_subdomain
from pipeline.errors import ConfigError
from pipeline.invitations.tokens import token_hash


def request(**changes: object) -> BootstrapInput:
    values: dict[str, object] = {
        "org_id": str(uuid.uuid4()),
        "job_id": str(uuid.uuid4()),
        "name": "Acme Clinics",
        "subdomain": "acme",
        "admins": [Admin("alice@example.org", "admin"), Admin("bob@example.org", "owner")],
    }
    values.update(changes)
    return BootstrapInput(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize("label", ["a", "acme", "acme-health", "a1", "0", "x" * 63, "a--b"])
def test_valid_subdomains(label: str) -> None:
    assert validate_subdomain(label, "example.test") == f"{label}.example.test"


@pytest.mark.parametrize(
    "label", ["", "-acme", "acme-", "Acme", "acme_health", "acme.health", "x" * 64, "é", " a"]
)
def test_invalid_subdomains_name_the_field(label: str) -> None:
    with pytest.raises(InvalidBootstrapInput) as err:
        validate_subdomain(label, "example.test")
    assert err.value.field == "subdomain"
    assert "not a valid DNS label" in str(err.value)


def test_fqdn_longer_than_253_is_rejected() -> None:
    base = ".".join(["b" * 60] * 4)
    with pytest.raises(InvalidBootstrapInput, match="longer than 253"):
        validate_subdomain("a" * 20, base)


@pytest.mark.parametrize(
    "email", ["alice@example.org", "a.b+tag@mail.example.co.uk", "O'Brien@Example.ORG"]
)
def test_valid_emails(email: str) -> None:
    assert validate_email(f"  {email} ") == email


@pytest.mark.parametrize(
    "email",
    [
        "",
        "alice",
        "alice@",
        "@example.org",
        "alice@localhost",
        "alice@exa mple.org",
        "al ice@example.org",
        "alice..b@example.org",
        ".alice@example.org",
        "alice@-example.org",
        "alice@example.org\r\nBcc: x@y.z",
        "a" * 65 + "@example.org",
    ],
)
def test_malformed_emails(email: str) -> None:
    with pytest.raises(InvalidBootstrapInput):
        validate_email(email)


def test_valid_request_yields_fqdn_and_stripped_admins() -> None:
    valid = validate_bootstrap(
        request(admins=[Admin(" alice@example.org ", "admin")]), "example.test"
    )
    assert valid.fqdn == "acme.example.test"
    assert valid.admins == [Admin("alice@example.org", "admin")]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"org_id": "nope"}, "org_id"),
        ({"job_id": ""}, "job_id"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 256}, "name"),
        ({"subdomain": "Bad_Label"}, "subdomain"),
        ({"admins": []}, "admins"),
        ({"admins": [Admin("x@example.org", "admin")] * 101}, "admins"),
        ({"admins": [Admin("a@example.org", "admin"), Admin("bad", "admin")]}, "admins[1].email"),
        (
            {"admins": [Admin("a@example.org", "admin"), Admin("A@Example.org", "x")]},
            "admins[1].email",
        ),
        ({"admins": [Admin("a@example.org", "Admin")]}, "admins[0].role"),
        ({"admins": [Admin("a@example.org", "org-admin")]}, "admins[0].role"),
    ],
)
def test_invalid_requests_name_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidBootstrapInput) as err:
        validate_bootstrap(request(**changes), "example.test")
    assert err.value.field == field


KEY = "k" * 32


def test_settings_defaults() -> None:
    s = from_env({"PIPELINE_DATABASE_URL": "postgresql://db/x", "PIPELINE_INVITATION_KEY": KEY})
    assert s.task_queue == "org-bootstrap"
    assert s.base_domain == "example.test"
    assert (s.dns_provider, s.email_provider) == ("local", "local")
    assert s.invitation_ttl == timedelta(days=7)
    assert s.dns_target == "example.test"
    assert (
        s.accept_url("a.example.test", "tok")
        == "https://a.example.test/invitations/accept?token=tok"
    )


def test_settings_from_env_reads_every_knob() -> None:
    s = from_env(
        {
            "PIPELINE_DATABASE_URL": "postgresql://db/x",
            "PIPELINE_INVITATION_KEY": KEY,
            "PIPELINE_TEMPORAL_ADDRESS": "temporal:7233",
            "PIPELINE_TEMPORAL_TASK_QUEUE": "q",
            "PIPELINE_BASE_DOMAIN": "Clinics.Example",
            "PIPELINE_DNS_PROVIDER": "cloudflare",
            "PIPELINE_CLOUDFLARE_API_TOKEN": "secret-token",
            "PIPELINE_CLOUDFLARE_ZONE_ID": "zone",
            "PIPELINE_EMAIL_PROVIDER": "SMTP",
            "PIPELINE_SMTP_HOST": "mail",
            "PIPELINE_SMTP_PORT": "2525",
            "PIPELINE_SMTP_STARTTLS": "yes",
            "PIPELINE_EMAIL_OUTBOX_DIR": "/tmp/out",
            "PIPELINE_INVITATION_TTL_DAYS": "2",
            "PIPELINE_BOOTSTRAP_RETRY_INITIAL_MS": "100",
            "PIPELINE_BOOTSTRAP_PROVIDER_MAX_ATTEMPTS": "3",
        }
    )
    assert (s.temporal_address, s.task_queue, s.base_domain) == (
        "temporal:7233",
        "q",
        "clinics.example",
    )
    assert (s.dns_provider, s.cloudflare_zone_id, s.email_provider) == (
        "cloudflare",
        "zone",
        "smtp",
    )
    assert (s.smtp_host, s.smtp_port, s.smtp_starttls) == ("mail", 2525, True)
    assert s.email_outbox_dir == Path("/tmp/out")
    assert s.invitation_ttl == timedelta(days=2)
    assert (s.retry.initial_interval_ms, s.retry.provider_maximum_attempts) == (100, 3)
    # Secrets never reach a log line through repr.
    assert "secret-token" not in repr(s) and "postgresql://db/x" not in repr(s)


def test_settings_report_every_problem_with_its_source() -> None:
    with pytest.raises(ConfigError) as err:
        from_env(
            {
                "PIPELINE_DNS_PROVIDER": "cloudflare",
                "PIPELINE_EMAIL_PROVIDER": "carrier-pigeon",
                "PIPELINE_SMTP_PORT": "twenty-five",
                "PIPELINE_SMTP_STARTTLS": "maybe",
                "PIPELINE_BASE_DOMAIN": "bad_domain",
            }
        )
    text = str(err.value)
    for expected in [
        "PIPELINE_DATABASE_URL is required (Secret)",
        "PIPELINE_CLOUDFLARE_API_TOKEN is required when PIPELINE_DNS_PROVIDER=cloudflare (Secret)",
        "PIPELINE_CLOUDFLARE_ZONE_ID",
        "PIPELINE_EMAIL_PROVIDER must be local or smtp",
        "PIPELINE_SMTP_PORT must be an integer",
        "PIPELINE_SMTP_STARTTLS must be true or false",
        "PIPELINE_BASE_DOMAIN",
    ]:
        assert expected in text


def test_invitation_email_carries_token_link_and_stable_message_id() -> None:
    token = "e4d64ef8-071b-4c3d-a849-b4c5d6e7f809." + "M" * 43
    invitation = Invitation(
        invitation_id="e4d64ef8-071b-4c3d-a849-b4c5d6e7f809",
        email="alice@example.org",
        role="admin",
        token_hash=token_hash(token),
        expires_at="2025-12-03T03:01:01+00:00",
    )
    settings = BootstrapSettings(database_url="postgresql://db/x")
    message = render_invitation_email(
        organization_name="Acme",
        fqdn="acme.example.test",
        invitation=invitation,
        token=token,
        accept_url=settings.accept_url("acme.example.test", token),
    )
    assert message.to == "alice@example.org"
    assert token in message.body
    assert f"https://acme.example.test/invitations/accept?token={token}" in message.body
    assert message.message_id == f"<invitation-{invitation.invitation_id}@acme.example.test>"
    mime = to_mime(message, "no-reply@example.test")
    assert mime["From"] == "no-reply@example.test"
    assert token in mime.get_content()


def test_invitation_key_is_required_long_and_kept_out_of_repr() -> None:
    with pytest.raises(ConfigError, match="PIPELINE_INVITATION_KEY is required: at least 32 bytes"):
        from_env({"PIPELINE_DATABASE_URL": "postgresql://db/x"})
    with pytest.raises(ConfigError, match="PIPELINE_INVITATION_KEY"):
        from_env({"PIPELINE_DATABASE_URL": "postgresql://db/x", "PIPELINE_INVITATION_KEY": "short"})
    s = from_env({"PIPELINE_DATABASE_URL": "postgresql://db/x", "PIPELINE_INVITATION_KEY": KEY})
    assert s.invitation_key.get_secret_value() == KEY.encode()
    assert KEY not in repr(s)


@pytest.mark.parametrize(
    ("error", "kind", "non_retryable"),
    [
        (InvalidBootstrapInput("subdomain", "bad"), "InvalidBootstrapInput", True),
        (DnsProviderError("HTTP 503", retryable=True), "DnsProviderError", False),
        (DnsProviderError("HTTP 403", retryable=False), "DnsProviderError", True),
        (EmailProviderError("550", retryable=False), "EmailProviderError", True),
        (psycopg.OperationalError("connection refused"), "EventStoreUnavailable", False),
        (psycopg.errors.UndefinedFunction("no function"), "EventStoreRejected", True),
    ],
)
def test_one_place_decides_retry_or_stop(error: Exception, kind: str, non_retryable: bool) -> None:
    with pytest.raises(ApplicationError) as err, classified():
        raise error
    assert err.value.type == kind
    assert err.value.non_retryable is non_retryable
    assert err.value.__cause__ is error
