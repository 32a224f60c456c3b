"""Credentials never leave the settings by accident: not through repr/str (and so not
through a log line), not in ``pipeline check``'s output, not in a configuration error.

Each secret below is a distinct word, searched for verbatim in everything shown.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from pydantic import SecretStr

from pipeline.bootstrap.settings import BootstrapSettings
from pipeline.bootstrap.settings import from_env as bootstrap_from_env
from pipeline.config import Settings, load_settings, reader_config
from pipeline.security import connect_temporal, faust_credentials
from replication.kafka_client import client_options

PIPELINE = str(Path(sys.executable).parent / "pipeline")
CLOSED = "127.0.0.1:9"  # discard port: nothing listens there
SECRETS = {
    "db": "DbPassw0rdSecret",
    "reader": "ReaderPassw0rdSecret",
    "kafka": "KafkaSaslPassw0rdSecret",
    "kafka key": "KafkaKeyPassw0rdSecret",
    "temporal": "TemporalApiKeySecret",
    "cloudflare": "CloudflareTokenSecret",
    "smtp": "SmtpPassw0rdSecret",
    "invitation": "InvitationKeySecret" + "x" * 32,
}
ENV = {
    "PIPELINE_DATABASE_URL": f"postgresql://app:{SECRETS['db']}@127.0.0.1:9/app",
    "PIPELINE_READER_DATABASE_URL": f"postgresql://rd:{SECRETS['reader']}@127.0.0.1:9/app",
    "PIPELINE_KAFKA_BOOTSTRAP_SERVERS": CLOSED,
    "PIPELINE_TEMPORAL_ADDRESS": CLOSED,
    "PIPELINE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
    "PIPELINE_KAFKA_SASL_MECHANISM": "PLAIN",
    "PIPELINE_KAFKA_SASL_USERNAME": "pipeline",
    "PIPELINE_KAFKA_SASL_PASSWORD": SECRETS["kafka"],
    "PIPELINE_KAFKA_SSL_KEY_PASSWORD": SECRETS["kafka key"],
    "PIPELINE_TEMPORAL_API_KEY": SECRETS["temporal"],
    "PIPELINE_DNS_PROVIDER": "cloudflare",
    "PIPELINE_CLOUDFLARE_API_TOKEN": SECRETS["cloudflare"],
    "PIPELINE_CLOUDFLARE_ZONE_ID": "zone",
    "PIPELINE_SMTP_USERNAME": "mailer",
    "PIPELINE_SMTP_PASSWORD": SECRETS["smtp"],
    "PIPELINE_INVITATION_KEY": SECRETS["invitation"],
}


def assert_no_secret(text: str) -> None:
    for what, secret in SECRETS.items():
        assert secret not in text, f"the {what} secret is shown: {text}"


def test_repr_str_and_dump_of_the_settings_hide_every_secret() -> None:
    settings = load_settings(ENV)
    worker = bootstrap_from_env(ENV)
    for shown in (settings, worker):
        assert_no_secret(repr(shown))
        assert_no_secret(str(shown))
        assert_no_secret(str(shown.model_dump()))
        assert_no_secret(shown.model_dump_json())
    # The code that connects still gets the values.
    assert SECRETS["db"] in settings.database_url.get_secret_value()
    assert SECRETS["reader"] in reader_config(settings).dsn
    assert settings.kafka_security.sasl_password == SecretStr(SECRETS["kafka"])
    assert settings.kafka_security.key_password == SecretStr(SECRETS["kafka key"])
    assert settings.temporal_security.api_key == SecretStr(SECRETS["temporal"])
    assert worker.temporal_security.api_key == SecretStr(SECRETS["temporal"])
    assert worker.cloudflare_api_token == SecretStr(SECRETS["cloudflare"])
    assert worker.smtp_password == SecretStr(SECRETS["smtp"])
    assert worker.invitation_key.get_secret_value() == SECRETS["invitation"].encode()


def test_the_kafka_and_temporal_credentials_are_secrets_dumped_masked() -> None:
    """Kafka's SASL and key passwords and Temporal's API key are SecretStr: the security
    settings are in the dumps now (they were left out while the credentials were plain
    strings), with each credential masked, and their own repr/str hide it too."""
    settings = load_settings(ENV)
    worker = bootstrap_from_env(ENV)
    kafka, temporal = settings.kafka_security, settings.temporal_security
    for shown in (kafka, temporal, worker.temporal_security):
        assert_no_secret(repr(shown))
        assert_no_secret(str(shown))
    dumped = settings.model_dump()
    assert dumped["kafka_security"]["sasl_username"] == "pipeline"
    assert isinstance(dumped["kafka_security"]["sasl_password"], SecretStr)
    assert isinstance(dumped["kafka_security"]["key_password"], SecretStr)
    assert isinstance(dumped["temporal_security"]["api_key"], SecretStr)
    as_json = orjson.loads(settings.model_dump_json())
    assert as_json["kafka_security"]["sasl_password"] == "**********"
    assert as_json["kafka_security"]["key_password"] == "**********"
    assert as_json["temporal_security"]["api_key"] == "**********"
    assert orjson.loads(worker.model_dump_json())["temporal_security"]["api_key"] == "**********"
    # Where a client connects, it is handed the value.
    assert client_options(kafka)["sasl_plain_password"] == SECRETS["kafka"]
    credentials = faust_credentials(kafka)
    assert credentials is not None
    assert getattr(credentials, "password", None) == SECRETS["kafka"]


async def test_temporal_is_handed_the_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from temporalio.client import Client

    given: dict[str, object] = {}

    async def connect(address: str, **kwargs: object) -> object:
        given.update(kwargs, address=address)
        return object()

    monkeypatch.setattr(Client, "connect", connect)
    await connect_temporal(CLOSED, "default", load_settings(ENV).temporal_security)
    assert given["api_key"] == SECRETS["temporal"]


def test_logging_the_settings_shows_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("pipeline.test_settings_secrets")
    with caplog.at_level(logging.DEBUG):
        settings = load_settings(ENV)
        log.info("settings %s / %r", settings, settings)
        log.info("reader %r", reader_config(settings).kafka_security)
        log.info("kafka %s, temporal %s", settings.kafka_security, settings.temporal_security)
        log.info("dump %s / %s", settings.model_dump(), settings.model_dump_json())
        log.info("worker %s", bootstrap_from_env(ENV))
    assert caplog.records
    assert_no_secret(caplog.text)


def test_settings_built_in_code_keep_a_given_dsn_secret_too() -> None:
    settings = Settings(
        database_url=ENV["PIPELINE_DATABASE_URL"],
        kafka_bootstrap_servers=CLOSED,
        temporal_address=CLOSED,
    )
    worker = BootstrapSettings(database_url=ENV["PIPELINE_DATABASE_URL"])
    assert_no_secret(repr(settings) + repr(worker))


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    return subprocess.run(
        [PIPELINE, *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_pipeline_check_output_and_log_show_no_secret() -> None:
    result = run("check", env={**ENV, "PIPELINE_LOG_LEVEL": "DEBUG"})
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "FAIL postgres" in result.stdout
    assert_no_secret(result.stdout + result.stderr)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PIPELINE_TOPIC_PARTITIONS", "zero"),
        # Problems in the very settings that hold the credentials.
        ("PIPELINE_KAFKA_SASL_MECHANISM", "NOPE"),
        ("PIPELINE_KAFKA_SSL_CA_FILE", "/nonexistent/ca.pem"),
        ("PIPELINE_TEMPORAL_TLS", "maybe"),
    ],
)
def test_a_configuration_error_shows_no_secret(variable: str, value: str) -> None:
    result = run("check", env={**ENV, variable: value})
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert variable in result.stderr
    assert_no_secret(result.stdout + result.stderr)


def test_the_dsn_alone_is_read_for_migrate_and_emit() -> None:
    from pipeline.config import database_url_from_env

    assert database_url_from_env(ENV) == ENV["PIPELINE_DATABASE_URL"]
