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
