"""Kafka SASL/TLS and Temporal TLS settings: parsing, validation before any I/O, the
options handed to aiokafka, Faust and temporalio. Certificates are made with openssl."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from faust.auth import SASLCredentials, SSLCredentials
from faust.types.auth import AuthProtocol, SASLMechanism
from pydantic import SecretStr
from temporalio.service import TLSConfig
from typer.testing import CliRunner

from pipeline.bootstrap.settings import from_env
from pipeline.cli import app
from pipeline.config import load_settings
from pipeline.errors import ConfigError
from pipeline.security import faust_credentials, temporal_tls
from replication.kafka_client import PLAINTEXT, KafkaSecurity, client_options
from tests.integration.secure_broker import issue, make_ca

BASE = {
    "PIPELINE_DATABASE_URL": "postgresql://app@db.internal:5432/app",
    "PIPELINE_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
    "PIPELINE_TEMPORAL_ADDRESS": "127.0.0.1:9",
}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pki")
    ca = make_ca(root, "ca")
    cert, key = issue(root, ca, "client", "DNS:client")
    not_pem = root / "not.pem"
    not_pem.write_text("this is not a certificate\n")
    return {"ca": ca[0], "cert": cert, "key": key, "not_pem": not_pem}


def problems(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(BASE | env)
    return str(caught.value)


def test_the_default_is_plaintext_without_tls() -> None:
    settings = load_settings(BASE)
    assert settings.kafka_security == PLAINTEXT
    assert client_options(settings.kafka_security) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(settings.kafka_security) is None
    assert not settings.temporal_security.tls
    assert temporal_tls(settings.temporal_security) is False


def test_sasl_ssl_with_scram_builds_every_clients_options(pki: dict[str, Path]) -> None:
    settings = load_settings(
        BASE
        | {
            "PIPELINE_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
            "PIPELINE_KAFKA_SASL_MECHANISM": "scram-sha-512",
            "PIPELINE_KAFKA_SASL_USERNAME": "pipeline",
            "PIPELINE_KAFKA_SASL_PASSWORD": "pw",
            "PIPELINE_KAFKA_SSL_CA_FILE": str(pki["ca"]),
        }
    )
    security = settings.kafka_security
    assert "pw" not in repr(security)
    options = client_options(security)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("pipeline", "pw")
    context = options["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    credentials = faust_credentials(security)
    assert isinstance(credentials, SASLCredentials)
    assert credentials.protocol == AuthProtocol.SASL_SSL
    assert credentials.mechanism == SASLMechanism.SCRAM_SHA_512
    assert credentials.ssl_context is not None
    # The reader gets the same settings.
    from pipeline.config import reader_config

    assert reader_config(settings).kafka_security == security


def test_ssl_with_a_client_certificate_and_sasl_plaintext(pki: dict[str, Path]) -> None:
    ssl_only = KafkaSecurity(
        protocol="SSL", ca_file=str(pki["ca"]), cert_file=str(pki["cert"]), key_file=str(pki["key"])
    )
    assert isinstance(faust_credentials(ssl_only), SSLCredentials)
    assert "sasl_mechanism" not in client_options(ssl_only)
    plain = KafkaSecurity("SASL_PLAINTEXT", "PLAIN", "u", SecretStr("p"))
    credentials = faust_credentials(plain)
    assert isinstance(credentials, SASLCredentials)
    assert credentials.protocol == AuthProtocol.SASL_PLAINTEXT
    assert "ssl_context" not in client_options(plain)


def test_a_ca_path_that_does_not_exist_is_a_config_error_naming_it() -> None:
    text = problems(
        {
            "PIPELINE_KAFKA_SECURITY_PROTOCOL": "SSL",
            "PIPELINE_KAFKA_SSL_CA_FILE": "/nonexistent/ca.pem",
        }
    )
    assert "PIPELINE_KAFKA_SSL_CA_FILE (ConfigMap pipeline-config; the file from Secret" in text
    assert "/nonexistent/ca.pem does not exist" in text


def test_a_file_that_is_not_pem_is_a_config_error(pki: dict[str, Path]) -> None:
    text = problems(
        {
            "PIPELINE_KAFKA_SECURITY_PROTOCOL": "SSL",
            "PIPELINE_KAFKA_SSL_CA_FILE": str(pki["not_pem"]),
        }
    )
    assert "PIPELINE_KAFKA_SSL_CA_FILE (ConfigMap" in text and "is not a PEM certificate" in text
    text = problems({"PIPELINE_TEMPORAL_TLS_CA_FILE": str(pki["not_pem"])})
    assert "PIPELINE_TEMPORAL_TLS_CA_FILE (ConfigMap" in text and "not a PEM certificate" in text
    # A key that is not the certificate's: named against the certificate variable.
    text = problems(
        {
            "PIPELINE_TEMPORAL_TLS_CERT_FILE": str(pki["ca"]),
            "PIPELINE_TEMPORAL_TLS_KEY_FILE": str(pki["key"]),
        }
    )
    assert "PIPELINE_TEMPORAL_TLS_CERT_FILE (ConfigMap" in text
    assert "KEY_VALUES_MISMATCH" in text


def test_sasl_needs_a_mechanism_and_credentials_from_the_secret() -> None:
    text = problems({"PIPELINE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"})
    assert "PIPELINE_KAFKA_SASL_MECHANISM" in text
    assert "PIPELINE_KAFKA_SASL_USERNAME (Secret pipeline-secrets): is required" in text
    assert "PIPELINE_KAFKA_SASL_PASSWORD (Secret pipeline-secrets): is required" in text
    assert "must be one of PLAINTEXT" in problems({"PIPELINE_KAFKA_SECURITY_PROTOCOL": "TLS"})


def test_settings_that_the_protocol_would_ignore_are_refused(pki: dict[str, Path]) -> None:
    assert "use SSL or SASL_SSL" in problems({"PIPELINE_KAFKA_SSL_CA_FILE": str(pki["ca"])})
    assert "use SASL_SSL or SASL_PLAINTEXT" in problems({"PIPELINE_KAFKA_SASL_USERNAME": "u"})
    text = problems(
        {
            "PIPELINE_KAFKA_SECURITY_PROTOCOL": "SSL",
            "PIPELINE_KAFKA_SSL_CERT_FILE": str(pki["cert"]),
        }
    )
    assert "PIPELINE_KAFKA_SSL_KEY_FILE" in text and "is required with" in text


def test_temporal_mtls_and_api_key(pki: dict[str, Path]) -> None:
    settings = load_settings(
        BASE
        | {
            "PIPELINE_TEMPORAL_TLS_CA_FILE": str(pki["ca"]),
            "PIPELINE_TEMPORAL_TLS_CERT_FILE": str(pki["cert"]),
            "PIPELINE_TEMPORAL_TLS_KEY_FILE": str(pki["key"]),
            "PIPELINE_TEMPORAL_TLS_SERVER_NAME": "temporal.internal",
            "PIPELINE_TEMPORAL_API_KEY": "key-123",
        }
    )
    security = settings.temporal_security
    assert security.tls  # implied by the files
    assert "key-123" not in repr(security)
    tls = temporal_tls(security)
    assert isinstance(tls, TLSConfig)
    assert tls.server_root_ca_cert == pki["ca"].read_bytes()
    assert tls.client_cert == pki["cert"].read_bytes()
    assert tls.client_private_key == pki["key"].read_bytes()
    assert tls.domain == "temporal.internal"
    # An API key alone (Temporal Cloud): TLS with the system's CAs.
    cloud = load_settings(BASE | {"PIPELINE_TEMPORAL_API_KEY": "k"}).temporal_security
    assert cloud.tls and cloud.api_key == SecretStr("k")
    assert temporal_tls(cloud) == TLSConfig()
    off = load_settings(
        BASE | {"PIPELINE_TEMPORAL_API_KEY": "k", "PIPELINE_TEMPORAL_TLS": "false"}
    ).temporal_security
    assert temporal_tls(off) is False


def test_the_worker_reads_the_same_temporal_settings(pki: dict[str, Path]) -> None:
    env = {
        "PIPELINE_DATABASE_URL": BASE["PIPELINE_DATABASE_URL"],
        "PIPELINE_INVITATION_KEY": "a-test-only-invitation-key-of-at-least-32-bytes",
    }
    worker = from_env(env | {"PIPELINE_TEMPORAL_TLS_CA_FILE": str(pki["ca"])})
    assert worker.temporal_security.tls
    assert worker.temporal_security.ca_file == str(pki["ca"])
    with pytest.raises(ConfigError, match=r"PIPELINE_TEMPORAL_TLS_CERT_FILE: .*does not exist"):
        from_env(
            env
            | {
                "PIPELINE_TEMPORAL_TLS_CERT_FILE": "/nonexistent/c.pem",
                "PIPELINE_TEMPORAL_TLS_KEY_FILE": str(pki["key"]),
            }
        )


@pytest.mark.parametrize("command", ["check", "status", "reader", "replay", "run"])
def test_commands_exit_2_on_a_missing_ca_before_any_io(command: str) -> None:
    env = BASE | {
        "PIPELINE_KAFKA_SECURITY_PROTOCOL": "SSL",
        "PIPELINE_KAFKA_SSL_CA_FILE": "/nonexistent/ca.pem",
    }
    args = [command, "--from-lsn", "0/0"] if command == "replay" else [command]
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 2, result.output
    assert "PIPELINE_KAFKA_SSL_CA_FILE" in result.output


def test_worker_exits_2_on_a_missing_temporal_ca() -> None:
    env = {
        "PIPELINE_DATABASE_URL": BASE["PIPELINE_DATABASE_URL"],
        "PIPELINE_TEMPORAL_TLS_CA_FILE": "/nonexistent/ca.pem",
    }
    result = CliRunner().invoke(app, ["worker"], env=env)
    assert result.exit_code == 2, result.output
    assert "PIPELINE_TEMPORAL_TLS_CA_FILE" in result.output


def test_the_dsn_keeps_sslmode_verify_full_down_to_the_replication_connection() -> None:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from pipeline.config import reader_config

    dsn = (
        "postgresql://pipeline:pw@db.example.com:5432/app"
        "?sslmode=verify-full&sslrootcert=/etc/pipeline/tls/pg-ca.pem"
    )
    settings = load_settings(BASE | {"PIPELINE_DATABASE_URL": dsn})
    assert settings.database_url.get_secret_value() == dsn
    reader_dsn = reader_config(settings).dsn
    assert reader_dsn == dsn
    # What psycopg hands libpq for the reader's replication="database" connection.
    params = conninfo_to_dict(make_conninfo(reader_dsn, replication="database"))
    assert params["sslmode"] == "verify-full"
    assert params["sslrootcert"] == "/etc/pipeline/tls/pg-ca.pem"
    assert params["replication"] == "database"


def test_temporal_failures_name_the_handshake_that_failed() -> None:
    from temporalio.service import RPCError, RPCStatusCode

    from pipeline.handshake import temporal_failure
    from pipeline.security import TemporalSecurity

    tls = TemporalSecurity(tls=True, ca_file="/etc/ca.pem")
    unknown = RuntimeError(
        "Failed client connect: Server connection error: tonic::transport::Error(Transport, "
        "ConnectError(Custom { kind: InvalidData, error: InvalidCertificate(UnknownIssuer) }))"
    )
    shake = temporal_failure("t:7233", unknown, tls)
    assert shake.refused and "certificate verify failed" in shake.detail
    assert "\n" not in shake.detail
    denied = RPCError("bad key", RPCStatusCode.UNAUTHENTICATED, b"")
    shake = temporal_failure("t:7233", denied, TemporalSecurity(tls=True, api_key=SecretStr("k")))
    assert shake.refused and "PIPELINE_TEMPORAL_API_KEY" in shake.detail
    # Temporal's server (TLS 1.3) refusing a missing client certificate, as temporalio says it.
    closed = RuntimeError(
        "Failed client connect: `get_system_info` call error after connection: Status { "
        'code: Cancelled, message: "operation was canceled", source: Some(tonic::transport::'
        'Error(Transport, hyper::Error(Canceled, "connection closed"))) }'
    )
    shake = temporal_failure("t:7233", closed, tls)
    assert shake.refused and "TLS handshake failed" in shake.detail
    assert "PIPELINE_TEMPORAL_TLS_CERT_FILE" in shake.detail
    assert not temporal_failure("t:7233", closed, TemporalSecurity()).refused
    alert = RuntimeError(
        "Failed client connect: `get_system_info` call error after connection: Status { "
        'code: Unknown, message: "transport error", source: Some(tonic::transport::Error('
        'Transport, hyper::Error(Io, Custom { kind: InvalidData, error: "received fatal '
        'alert: UnknownCA" }))) }'
    )
    mtls = TemporalSecurity(tls=True, ca_file="/etc/ca.pem", cert_file="/c.pem", key_file="/k")
    shake = temporal_failure("t:7233", alert, mtls)
    assert shake.refused and "TLS handshake failed" in shake.detail
    assert "signed by a CA the frontend trusts" in shake.detail
    refused = RuntimeError("Failed client connect: tcp connect error: Connection refused")
    assert not temporal_failure("t:7233", refused, tls).refused  # down is not misconfigured
