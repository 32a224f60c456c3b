"""Authenticated, encrypted connections to Kafka and Temporal, from the environment.

One place builds them for every client of the project:

- Kafka: ``PIPELINE_KAFKA_SECURITY_PROTOCOL`` (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL),
  SASL PLAIN / SCRAM-SHA-256 / SCRAM-SHA-512, a CA file, a client certificate and key
  -> :class:`~replication.kafka_client.KafkaSecurity` (aiokafka's options:
  :func:`~replication.kafka_client.client_options`; Faust's: :func:`faust_credentials`).
- Temporal: TLS with a CA, an mTLS client certificate and key, an API key
  -> :class:`TemporalSecurity` (:func:`connect_temporal` replaces ``Client.connect``).

Parsing collects ``(variable, message)`` problems instead of raising, so the settings of
``pipeline`` (:mod:`pipeline.config`) and of the worker (:mod:`pipeline.bootstrap.settings`)
report them together with their own, before any I/O. A file that is missing, unreadable
or not PEM is such a problem: the SSL contexts are built once here to prove it.
Passwords, keys and API keys come from the Secret ``pipeline-secrets``; certificate and
key files from the Secret ``pipeline-tls`` mounted as a volume, their paths from the
ConfigMap (deploy/k8s).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from pydantic import SecretStr

from replication.kafka_client import (
    PROTOCOLS,
    SASL_MECHANISMS,
    KafkaSecurity,
    reveal,
    ssl_context,
)

if TYPE_CHECKING:  # imported where used: the settings are read by every command
    from faust.types.auth import CredentialsT
    from temporalio.client import Client
    from temporalio.service import TLSConfig

CONFIGMAP: Final = "pipeline-config"
SECRET: Final = "pipeline-secrets"
TLS_SECRET: Final = "pipeline-tls"
_FILE = f"ConfigMap {CONFIGMAP}; the file from Secret {TLS_SECRET}"

# Where each variable lives in Kubernetes (merged into pipeline.config.SOURCES).
SOURCES: Final[dict[str, str]] = {
    "PIPELINE_KAFKA_SECURITY_PROTOCOL": f"ConfigMap {CONFIGMAP}",
    "PIPELINE_KAFKA_SASL_MECHANISM": f"ConfigMap {CONFIGMAP}",
    "PIPELINE_KAFKA_SASL_USERNAME": f"Secret {SECRET}",
    "PIPELINE_KAFKA_SASL_PASSWORD": f"Secret {SECRET}",
    "PIPELINE_KAFKA_SSL_CA_FILE": _FILE,
    "PIPELINE_KAFKA_SSL_CERT_FILE": _FILE,
    "PIPELINE_KAFKA_SSL_KEY_FILE": _FILE,
    "PIPELINE_KAFKA_SSL_KEY_PASSWORD": f"Secret {SECRET}",
    "PIPELINE_KAFKA_SSL_CHECK_HOSTNAME": f"ConfigMap {CONFIGMAP}",
    "PIPELINE_TEMPORAL_TLS": f"ConfigMap {CONFIGMAP}",
    "PIPELINE_TEMPORAL_TLS_CA_FILE": _FILE,
    "PIPELINE_TEMPORAL_TLS_CERT_FILE": _FILE,
    "PIPELINE_TEMPORAL_TLS_KEY_FILE": _FILE,
    "PIPELINE_TEMPORAL_TLS_SERVER_NAME": f"ConfigMap {CONFIGMAP}",
    "PIPELINE_TEMPORAL_API_KEY": f"Secret {SECRET}",
}

Problems = list[tuple[str, str]]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True, slots=True)
class TemporalSecurity:
    """TLS (optionally mutual) and an API key for the Temporal frontend.

    The API key is a ``SecretStr`` (``**********`` in repr, str, logs and dumps);
    :func:`connect_temporal` hands its value to the client.
    """

    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    # The name the server's certificate must carry when it differs from the address's host.
    server_name: str | None = None
    api_key: SecretStr | None = None

    def describe(self) -> str:
        """A one-line summary without secrets."""
        parts = ["TLS" if self.tls else "plaintext"]
        if self.tls:
            parts.append(f"CA {self.ca_file}" if self.ca_file else "system CAs")
        if self.cert_file:
            parts.append(f"client certificate {self.cert_file}")
        if self.api_key:
            parts.append("API key")
        return ", ".join(parts)


class _Env:
    def __init__(self, env: Mapping[str, str], problems: Problems) -> None:
        self.env = env
        self.problems = problems

    def text(self, name: str) -> str | None:
        return self.env.get(name, "").strip() or None

    def flag(self, name: str, default: bool) -> bool:
        raw = (self.text(name) or "").lower()
        if not raw:
            return default
        if raw in _TRUE or raw in _FALSE:
            return raw in _TRUE
        self.problems.append((name, f"must be true or false, got {raw!r}"))
        return default

    def file(self, name: str) -> str | None:
        path = self.text(name)
        if path is None:
            return None
        if not Path(path).is_file():
            self.problems.append((name, f"{path} does not exist or is not a file"))
        elif not os.access(path, os.R_OK):
            self.problems.append((name, f"{path} is not readable by this process"))
        return path


def _secret(raw: str | None) -> SecretStr | None:
    """A credential from the environment (unset or empty: none)."""
    return SecretStr(raw) if raw else None


def _pair(r: _Env, cert: str, key: str) -> tuple[str | None, str | None]:
    cert_file, key_file = r.file(cert), r.file(key)
    if (cert_file is None) != (key_file is None):
        missing = key if key_file is None else cert
        r.problems.append((missing, f"is required with {cert if key_file is None else key}"))
    return cert_file, key_file


def kafka_security_from_env(env: Mapping[str, str], problems: Problems) -> KafkaSecurity:
    """Kafka's security settings; appends each problem as ``(variable, message)``."""
    r = _Env(env, problems)
    start = len(problems)
    protocol = (r.text("PIPELINE_KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT").upper()
    if protocol not in PROTOCOLS:
        problems.append(
            ("PIPELINE_KAFKA_SECURITY_PROTOCOL", f"must be one of {', '.join(PROTOCOLS)}")
        )
    sasl = protocol in ("SASL_PLAINTEXT", "SASL_SSL")
    tls = protocol in ("SSL", "SASL_SSL")
    mechanism = r.text("PIPELINE_KAFKA_SASL_MECHANISM")
    username = r.text("PIPELINE_KAFKA_SASL_USERNAME")
    password = _secret(env.get("PIPELINE_KAFKA_SASL_PASSWORD"))
    if mechanism is not None:
        mechanism = mechanism.upper()
    if sasl:
        if mechanism not in SASL_MECHANISMS:
            problems.append(
                (
                    "PIPELINE_KAFKA_SASL_MECHANISM",
                    f"must be one of {', '.join(SASL_MECHANISMS)} with {protocol}",
                )
            )
        for name, value in (
            ("PIPELINE_KAFKA_SASL_USERNAME", username),
            ("PIPELINE_KAFKA_SASL_PASSWORD", password),
        ):
            if value is None:
                problems.append((name, f"is required with {protocol}"))
    elif username or password or mechanism:
        problems.append(
            (
                "PIPELINE_KAFKA_SECURITY_PROTOCOL",
                f"is {protocol}, but SASL settings are set: use SASL_SSL or SASL_PLAINTEXT",
            )
        )
    ca_file = r.file("PIPELINE_KAFKA_SSL_CA_FILE")
    cert_file, key_file = _pair(r, "PIPELINE_KAFKA_SSL_CERT_FILE", "PIPELINE_KAFKA_SSL_KEY_FILE")
    if not tls and (ca_file or cert_file):
        problems.append(
            (
                "PIPELINE_KAFKA_SECURITY_PROTOCOL",
                f"is {protocol}, but TLS files are set: use SSL or SASL_SSL",
            )
        )
    security = KafkaSecurity(
        protocol=protocol,
        sasl_mechanism=mechanism if sasl else None,
        sasl_username=username if sasl else None,
        sasl_password=password if sasl else None,
        ca_file=ca_file,
        cert_file=cert_file,
        key_file=key_file,
        key_password=_secret(env.get("PIPELINE_KAFKA_SSL_KEY_PASSWORD")),
        check_hostname=r.flag("PIPELINE_KAFKA_SSL_CHECK_HOSTNAME", True),
    )
    if tls and len(problems) == start:
        _prove_pem(
            problems,
            "PIPELINE_KAFKA_SSL",
            ca_file,
            cert_file,
            key_file,
            key_password=reveal(security.key_password),
        )
    return security


def _prove_pem(
    problems: Problems,
    prefix: str,
    ca_file: str | None,
    cert_file: str | None,
    key_file: str | None,
    *,
    key_password: str | None = None,
) -> None:
    """Load the files into a TLS context once: a file that is not PEM, or a key that does
    not match its certificate, is a configuration problem, reported before any
    connection and against the variable that names the file."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if ca_file:
        try:
            context.load_verify_locations(ca_file)
        except (ssl.SSLError, OSError, ValueError) as exc:
            problems.append(
                (f"{prefix}_CA_FILE", f"{ca_file} is not a PEM certificate: {_why(exc)}")
            )
    if cert_file:
        try:
            context.load_cert_chain(cert_file, key_file, password=key_password)
        except (ssl.SSLError, OSError, ValueError) as exc:
            problems.append(
                (
                    f"{prefix}_CERT_FILE",
                    f"{cert_file} with {prefix}_KEY_FILE {key_file} is not a PEM certificate "
                    f"and its key: {_why(exc)}",
                )
            )


def _why(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason or exc)


def temporal_security_from_env(env: Mapping[str, str], problems: Problems) -> TemporalSecurity:
    """Temporal's TLS / mTLS / API key settings; appends each problem."""
    r = _Env(env, problems)
    start = len(problems)
    ca_file = r.file("PIPELINE_TEMPORAL_TLS_CA_FILE")
    cert_file, key_file = _pair(
        r, "PIPELINE_TEMPORAL_TLS_CERT_FILE", "PIPELINE_TEMPORAL_TLS_KEY_FILE"
    )
    api_key = _secret(env.get("PIPELINE_TEMPORAL_API_KEY", "").strip())
    # TLS is on as soon as anything TLS-like (or an API key, Temporal Cloud's) is set.
    implied = bool(ca_file or cert_file or api_key)
    tls = r.flag("PIPELINE_TEMPORAL_TLS", implied)
    if not tls and (ca_file or cert_file):
        problems.append(("PIPELINE_TEMPORAL_TLS", "is false, but TLS files are set"))
    security = TemporalSecurity(
        tls=tls,
        ca_file=ca_file,
        cert_file=cert_file,
        key_file=key_file,
        server_name=r.text("PIPELINE_TEMPORAL_TLS_SERVER_NAME"),
        api_key=api_key,
    )
    if tls and len(problems) == start:
        _prove_pem(problems, "PIPELINE_TEMPORAL_TLS", ca_file, cert_file, key_file)
    return security


def temporal_tls(security: TemporalSecurity) -> TLSConfig | bool:
    """temporalio's ``tls`` argument: False, or a TLSConfig read from the PEM files."""
    from temporalio.service import TLSConfig

    if not security.tls:
        return False

    def read(path: str | None) -> bytes | None:
        return Path(path).read_bytes() if path else None

    return TLSConfig(
        server_root_ca_cert=read(security.ca_file),
        domain=security.server_name,
        client_cert=read(security.cert_file),
        client_private_key=read(security.key_file),
    )


async def connect_temporal(address: str, namespace: str, security: TemporalSecurity) -> Client:
    """``Client.connect`` with the configured TLS, client certificate and API key."""
    from temporalio.client import Client

    return await Client.connect(
        address,
        namespace=namespace,
        tls=temporal_tls(security),
        api_key=reveal(security.api_key),
    )


def faust_credentials(security: KafkaSecurity) -> CredentialsT | None:
    """Faust's ``broker_credentials`` for the same settings (None for PLAINTEXT)."""
    from faust.auth import SASLCredentials, SSLCredentials

    context = ssl_context(security)
    if security.uses_sasl:
        return SASLCredentials(
            username=security.sasl_username,
            password=reveal(security.sasl_password),
            ssl_context=context,
            mechanism=security.sasl_mechanism,
        )
    if context is not None:
        return SSLCredentials(context)
    return None
