"""How every Kafka client of the project authenticates and encrypts: one place.

:class:`KafkaSecurity` is the validated ``security.protocol`` / SASL / TLS part of the
settings (built from ``PIPELINE_KAFKA_*`` by :mod:`pipeline.security`);
:func:`client_options` turns it into the keyword arguments every ``AIOKafkaProducer``,
``AIOKafkaConsumer`` and ``AIOKafkaAdminClient`` takes, so a call site only adds
``**client_options(security)``. The default is PLAINTEXT without SASL, what the local
broker of ``pipeline dev up`` speaks.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Final, TypedDict

from pydantic import SecretStr

PROTOCOLS: Final = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS: Final = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True, slots=True)
class KafkaSecurity:
    """Kafka's ``security.protocol``, SASL credentials and TLS files (paths, PEM).

    The passwords are ``SecretStr`` (``**********`` in repr, str, logs and dumps); the
    code that connects (:func:`client_options`, :func:`ssl_context`,
    ``pipeline.security.faust_credentials``) calls ``.get_secret_value()``.
    """

    protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    key_password: SecretStr | None = None
    # Off only for a broker whose certificate names no host the client dials (never in
    # production: it lets anyone holding a certificate of the same CA impersonate it).
    check_hostname: bool = True

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    def describe(self) -> str:
        """A one-line summary without secrets, for logs and ``pipeline check``."""
        parts = [self.protocol]
        if self.uses_sasl:
            parts.append(f"{self.sasl_mechanism} as {self.sasl_username}")
        if self.uses_tls:
            parts.append(f"CA {self.ca_file}" if self.ca_file else "system CAs")
            if self.cert_file:
                parts.append(f"client certificate {self.cert_file}")
        return ", ".join(parts)


PLAINTEXT: Final = KafkaSecurity()


class ClientOptions(TypedDict, total=False):
    """The security keyword arguments of aiokafka's clients."""

    security_protocol: str
    ssl_context: ssl.SSLContext
    sasl_mechanism: str
    sasl_plain_username: str
    sasl_plain_password: str


def reveal(secret: SecretStr | None) -> str | None:
    """The secret's value, where a client is handed it (None stays None)."""
    return secret.get_secret_value() if secret is not None else None


def ssl_context(security: KafkaSecurity) -> ssl.SSLContext | None:
    """The TLS context of SSL / SASL_SSL (None otherwise); raises OSError / SSLError on a
    missing or malformed file, which :mod:`pipeline.security` reports as configuration."""
    if not security.uses_tls:
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=security.ca_file)
    context.check_hostname = security.check_hostname
    if security.cert_file:
        context.load_cert_chain(
            security.cert_file, security.key_file, password=reveal(security.key_password)
        )
    return context


def client_options(security: KafkaSecurity) -> ClientOptions:
    """``**client_options(s)`` for any aiokafka client (a fresh SSL context per call)."""
    options: ClientOptions = {"security_protocol": security.protocol}
    context = ssl_context(security)
    if context is not None:
        options["ssl_context"] = context
    if security.uses_sasl:
        options["sasl_mechanism"] = security.sasl_mechanism or "PLAIN"
        options["sasl_plain_username"] = security.sasl_username or ""
        options["sasl_plain_password"] = reveal(security.sasl_password) or ""
    return options
