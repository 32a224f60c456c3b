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


CHECK_ENV = {
    "PIPELINE_DATABASE_URL": "postgresql://app@db.internal:5432/app",
    "PIPELINE_KAFKA_BOOTSTRAP_SERVERS": "kafka:9092",
    "PIPELINE_TEMPORAL_ADDRESS": "temporal:7233",
}


def check_exits_2(**env: str) -> str:
    """``pipeline check`` with CHECK_ENV changed by env: exit 2; returns the output."""
    result = CliRunner().invoke(app, ["check"], env={**CHECK_ENV, **env})
    assert result.exit_code == 2
    return result.output


def test_check_with_a_missing_variable_exits_2_naming_it_and_its_source() -> None:
    output = check_exits_2(PIPELINE_KAFKA_BOOTSTRAP_SERVERS="")
    assert "PIPELINE_KAFKA_BOOTSTRAP_SERVERS (ConfigMap pipeline-config): is not set" in output


def test_check_with_a_pooler_dsn_says_to_use_the_direct_host() -> None:
    output = check_exits_2(
        PIPELINE_DATABASE_URL="postgresql://u:p@aws-0-eu-west-1.pooler.supabase.com:6543/postgres"
    )
    assert "PIPELINE_DATABASE_URL (Secret pipeline-secrets)" in output
    assert "DIRECT host" in output


def test_every_command_has_help() -> None:
    for command in ("run", "worker", "reader", "replay", "status", "check", "migrate"):
        result = CliRunner().invoke(app, [command, "--help"])
        assert result.exit_code == 0, command
        assert "Usage" in result.output


HELP_READS = {
    "run": ("PIPELINE_DATABASE_URL", "PIPELINE_WEB_PORT", "PIPELINE_READY_MAX_LAG_BYTES",
            "PIPELINE_INSTANCE_ID", "PIPELINE_DATA_DIR", "PIPELINE_CONTRACT_PATH"),
    "reader": ("PIPELINE_DATABASE_URL", "PIPELINE_SLOT_NAME", "PIPELINE_TOPIC_PARTITIONS"),
    "replay": ("PIPELINE_KAFKA_BOOTSTRAP_SERVERS", "PIPELINE_TEMPORAL_ADDRESS"),
    "status": ("PIPELINE_DATABASE_URL", "PIPELINE_CONSUMER_GROUP"),
    "check": ("PIPELINE_DATABASE_URL", "PIPELINE_TEMPORAL_NAMESPACE"),
    "migrate": ("PIPELINE_DATABASE_URL", "PIPELINE_MIGRATIONS_DIR"),
    "worker": ("PIPELINE_TEMPORAL_ADDRESS", "PIPELINE_DNS_PROVIDER", "PIPELINE_SMTP_HOST"),
}  # fmt: skip


def test_each_commands_help_names_the_environment_variables_it_reads() -> None:
    from pipeline import envdoc

    wide = {"COLUMNS": "2000", "TERMINAL_WIDTH": "2000"}
    for command, names in HELP_READS.items():
        result = CliRunner().invoke(app, [command, "--help"], env=wide)
        assert result.exit_code == 0, command
        text = " ".join(result.output.split())
        assert "Environment:" in text, command
        for name in names:
            assert name in text, (command, name)
    worker = " ".join(CliRunner().invoke(app, ["worker", "--help"], env=wide).output.split())
    for name in envdoc.variables(*envdoc.WORKER):
        assert name in worker, name
    emit = CliRunner().invoke(app, ["emit", "bootstrap", "--help"], env=wide)
    assert "PIPELINE_DATABASE_URL" in emit.output
    dev = CliRunner().invoke(app, ["dev", "--help"], env=wide)
    assert "PIPELINE_DEV_PG_PORT" in " ".join(dev.output.split())


def test_version() -> None:
    from importlib.metadata import version

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"pipeline {version('pipeline')}"


def test_dev_env_exports_every_port_it_uses() -> None:
    env = {
        "PIPELINE_DEV_PG_PORT": "41001",
        "PIPELINE_DEV_KAFKA_PORT": "41002",
        "PIPELINE_DEV_KAFKA_CONTROLLER_PORT": "41003",
        "PIPELINE_DEV_TEMPORAL_PORT": "41004",
        "PIPELINE_DEV_TEMPORAL_UI_PORT": "41005",
        "PIPELINE_WEB_PORT": "41006",
    }
    result = CliRunner().invoke(app, ["dev", "env"], env=env)
    assert result.exit_code == 0
    for name, value in env.items():
        assert f"export {name}={value}\n" in result.output
    assert "export PIPELINE_DATABASE_URL=postgresql://postgres@127.0.0.1:41001/pipeline" in (
        result.output
    )


def test_progress_bar_draws_nothing_but_a_summary_when_not_a_terminal() -> None:
    import io

    from pipeline.progress import Progress

    out = io.StringIO()
    bar = Progress("replaying", stream=out)
    bar.total(10)
    for _ in range(10):
        bar.advance(1)
    bar.close()
    assert "\r" not in out.getvalue()
    assert out.getvalue().count("\n") == 1
    assert "10/10" in out.getvalue()
