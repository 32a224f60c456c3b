"""The command line's surface."""

from __future__ import annotations

from typer.testing import CliRunner

from pipeline.cli import app


def test_help_lists_the_commands() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("dev", "migrate", "emit"):
        assert command in result.output


def test_migrate_without_configuration_exits_2_naming_the_variable() -> None:
    result = CliRunner().invoke(app, ["migrate"], env={"PIPELINE_DATABASE_URL": ""})
    assert result.exit_code == 2
    assert "PIPELINE_DATABASE_URL" in result.output


def test_check_with_a_missing_variable_exits_2_naming_it_and_its_source() -> None:
    env = {
        "PIPELINE_DATABASE_URL": "postgresql://app@db.internal:5432/app",
        "PIPELINE_KAFKA_BOOTSTRAP_SERVERS": "",
        "PIPELINE_TEMPORAL_ADDRESS": "temporal:7233",
    }
    result = CliRunner().invoke(app, ["check"], env=env)
    assert result.exit_code == 2
    assert (
        "PIPELINE_KAFKA_BOOTSTRAP_SERVERS (ConfigMap pipeline-config): is not set" in result.output
    )


def test_check_with_a_pooler_dsn_says_to_use_the_direct_host() -> None:
    env = {
        "PIPELINE_DATABASE_URL": "postgresql://u:p@aws-0-eu-west-1.pooler.supabase.com:6543/postgres",
        "PIPELINE_KAFKA_BOOTSTRAP_SERVERS": "kafka:9092",
        "PIPELINE_TEMPORAL_ADDRESS": "temporal:7233",
    }
    result = CliRunner().invoke(app, ["check"], env=env)
    assert result.exit_code == 2
    assert "PIPELINE_DATABASE_URL (Secret pipeline-secrets)" in result.output
    assert "DIRECT host" in result.output


def test_every_command_has_help() -> None:
    for command in ("run", "worker", "reader", "replay", "status", "check", "migrate"):
        result = CliRunner().invoke(app, [command, "--help"])
        assert result.exit_code == 0, command
        assert "Usage" in result.output
