"""The bootstrap's external providers (DNS, email), chosen by the settings."""

from __future__ import annotations

from pipeline.bootstrap.pool import ConnectionPool
from pipeline.bootstrap.providers.dns import CloudflareDnsProvider, DnsProvider, LocalDnsProvider
from pipeline.bootstrap.providers.email import (
    EmailProvider,
    LocalEmailProvider,
    SmtpEmailProvider,
)
from pipeline.bootstrap.settings import BootstrapSettings
from pipeline.errors import ConfigError


def build_dns_provider(settings: BootstrapSettings, pool: ConnectionPool) -> DnsProvider:
    """The DNS provider named by ``settings.dns_provider`` (``local`` borrows ``pool``'s
    connections)."""
    if settings.dns_provider == "local":
        return LocalDnsProvider(pool)
    if settings.cloudflare_api_token is None or settings.cloudflare_zone_id is None:
        raise ConfigError(
            "PIPELINE_CLOUDFLARE_API_TOKEN (Secret) and PIPELINE_CLOUDFLARE_ZONE_ID (ConfigMap) "
            "are required when PIPELINE_DNS_PROVIDER=cloudflare"
        )
    return CloudflareDnsProvider(
        settings.cloudflare_api_token.get_secret_value(),
        settings.cloudflare_zone_id,
        settings.cloudflare_base_url,
    )


def build_email_provider(settings: BootstrapSettings) -> EmailProvider:
    """The email provider named by ``settings.email_provider``."""
    if settings.email_provider == "local":
        return LocalEmailProvider(settings.email_outbox_dir, settings.smtp_from)
    return SmtpEmailProvider(
        settings.smtp_host,
        settings.smtp_port,
        settings.smtp_from,
        starttls=settings.smtp_starttls,
        username=settings.smtp_username,
        password=(settings.smtp_password.get_secret_value() if settings.smtp_password else None),
        timeout_s=settings.smtp_timeout_s,
    )


__all__ = [
    "CloudflareDnsProvider",
    "DnsProvider",
    "EmailProvider",
    "LocalDnsProvider",
    "LocalEmailProvider",
    "SmtpEmailProvider",
    "build_dns_provider",
    "build_email_provider",
]
