"""Configuration is validated before any I/O, with every problem named at once."""

from __future__ import annotations

import pytest

from pipeline.config import (
    database_url_from_env,
    load_settings,
    placeholder_problems,
    pooler_problem,
)
from pipeline.errors import ConfigError

GOOD = {
    "PIPELINE_DATABASE_URL": "postgresql://app:secret@db.internal:5432/app",
    "PIPELINE_KAFKA_BOOTSTRAP_SERVERS": "kafka-0:9092,kafka-1:9092",
    "PIPELINE_TEMPORAL_ADDRESS": "temporal-frontend:7233",
}


def test_good_configuration_loads() -> None:
    settings = load_settings(GOOD)
    assert settings.topic == "domain-events"
    assert settings.temporal_namespace == "default"


def test_every_missing_variable_is_named_with_its_kubernetes_source() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({})
    message = str(info.value)
    assert "PIPELINE_DATABASE_URL (Secret pipeline-secrets): is not set" in message
    assert "PIPELINE_KAFKA_BOOTSTRAP_SERVERS (ConfigMap pipeline-config): is not set" in message
    assert "PIPELINE_TEMPORAL_ADDRESS (ConfigMap pipeline-config): is not set" in message


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("PIPELINE_TEMPORAL_ADDRESS", "http://temporal:7233", "is not host:port"),
        ("PIPELINE_KAFKA_BOOTSTRAP_SERVERS", "kafka", "is not host:port"),
        ("PIPELINE_DATABASE_URL", "mysql://db/app", "must be a URL like postgresql://"),
        ("PIPELINE_TOPIC_PARTITIONS", "zero", "positive integer"),
        ("PIPELINE_SLOT_NAME", "Bad-Slot", "slot names"),
    ],
)
def test_malformed_values_are_rejected(name: str, value: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        load_settings({**GOOD, name: value})


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://u:p@aws-0-us-east-1.pooler.supabase.com:6543/postgres",
        "postgresql://u:p@aws-0-us-east-1.pooler.supabase.com:5432/postgres",
        "postgresql://u:p@db.example.com:5432/app?pgbouncer=true",
    ],
)
def test_pooler_dsn_is_rejected_with_the_direct_host_fix(dsn: str) -> None:
    assert pooler_problem(dsn) is not None
    with pytest.raises(ConfigError, match="use the database's DIRECT host"):
        load_settings({**GOOD, "PIPELINE_DATABASE_URL": dsn})


def test_direct_hosts_are_not_poolers() -> None:
    assert pooler_problem("postgresql://u:p@db.abcdefgh.supabase.co:5432/postgres") is None
    assert pooler_problem("postgresql://postgres@127.0.0.1:55432/pipeline") is None


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://u:p@odyssey-db:5432/app",
        "postgresql://u:p@pgbouncer-migration-source.internal:5432/app",
        "postgresql://u:p@db.example.com:6432/app",
    ],
)
def test_a_pooler_is_not_guessed_from_an_ordinary_name_or_port(dsn: str) -> None:
    # `pipeline check` asks the server instead (tests/integration/test_pooler_check.py).
    assert pooler_problem(dsn) is None
    assert (
        load_settings({**GOOD, "PIPELINE_DATABASE_URL": dsn}).database_url.get_secret_value() == dsn
    )


@pytest.mark.parametrize("raw", ["70000", "0", "65536", "http"])
def test_web_port_outside_the_tcp_range_is_named(raw: str) -> None:
    with pytest.raises(ConfigError, match=r"PIPELINE_WEB_PORT .*between 1 and 65535"):
        load_settings({**GOOD, "PIPELINE_WEB_PORT": raw})


def test_web_port_65535_is_accepted() -> None:
    assert load_settings({**GOOD, "PIPELINE_WEB_PORT": "65535"}).web_port == 65535


def test_placeholders_of_the_k8s_templates_are_rejected() -> None:
    env = {
        **GOOD,
        "PIPELINE_DATABASE_URL": "postgresql://pipeline:replace-me@db.example.com:5432/app",
        "PIPELINE_KAFKA_BOOTSTRAP_SERVERS": "kafka:9092",
        "PIPELINE_TOPIC": "Replace-Me",
    }
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    message = str(info.value)
    assert "PIPELINE_DATABASE_URL (Secret pipeline-secrets): still holds a placeholder" in message
    assert "PIPELINE_TOPIC (ConfigMap pipeline-config): still holds a placeholder" in message
    with pytest.raises(ConfigError, match="placeholder"):
        database_url_from_env({"PIPELINE_DATABASE_URL": env["PIPELINE_DATABASE_URL"]})


def test_placeholders_of_variables_run_does_not_read_are_left_to_their_reader() -> None:
    env = {**GOOD, "PIPELINE_CLOUDFLARE_ZONE_ID": "replace-with-the-zone-id"}
    assert load_settings(env).topic == "domain-events"
    assert placeholder_problems(env) == [
        "PIPELINE_CLOUDFLARE_ZONE_ID (ConfigMap pipeline-config): still holds a placeholder "
        "(replace-me...): set the real value"
    ]
