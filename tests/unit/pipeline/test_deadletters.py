"""The dead-letters CLI's usage and configuration errors (no services)."""

from __future__ import annotations


def test_dead_letters_cli_usage_and_configuration_errors_exit_2() -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app

    runner = CliRunner()
    assert runner.invoke(app, ["dead-letters", "--help"]).exit_code == 0
    both = runner.invoke(app, ["dead-letters", "redrive", "0/1/0/contract", "--all"])
    assert both.exit_code == 2 and "one KEY or --all" in both.output
    assert runner.invoke(app, ["dead-letters", "redrive"]).exit_code == 2
    unset = runner.invoke(app, ["dead-letters", "list"], env={"PIPELINE_DATABASE_URL": ""})
    assert unset.exit_code == 2 and "PIPELINE_DATABASE_URL" in unset.output
