"""``python -m bench.run``'s modes: what the short and the full mode measure, and where."""

from __future__ import annotations

import pytest

from bench.run import parse_args, phases


def test_short_mode_runs_three_times_on_the_dev_server() -> None:
    args = parse_args([])
    assert args.runs == 3
    assert args.temporal == "dev"
    assert args.paths == "direct,listen,ours"
    assert (args.seconds, args.events, args.bootstraps) == (10.0, 10_000, 100)


def test_full_mode_is_issue_17s_load_on_temporal_with_postgresql() -> None:
    args = parse_args(["--full"])
    assert args.temporal == "postgres"
    assert args.paths == "direct,listen,poll,ours"
    assert (args.bootstrap_rate, args.other_rate, args.seconds) == (100.0, 1000.0, 60.0)
    assert (args.events, args.bootstraps) == (100_000, 200)
    assert parse_args(["--full", "--temporal", "dev"]).temporal == "dev"
    assert parse_args(["--temporal", "postgres"]).temporal == "postgres"


def test_quick_iterations_and_drain_only() -> None:
    assert parse_args(["--runs", "1"]).runs == 1
    assert parse_args(["--drain-only"]).paths == ""


@pytest.mark.parametrize("argv", [["--runs", "0"], ["--paths", "ours,nope"]])
def test_bad_arguments_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2


def test_every_mode_ends_with_the_real_workflow_unless_skipped() -> None:
    short = parse_args([])
    assert phases(short) == ["direct", "listen", "ours", "starts", "drain", "workflow"]
    assert (short.workflow_rate, short.workflow_seconds, short.workflow_backlog) == (5.0, 20.0, 150)
    full = parse_args(["--full"])
    assert phases(full)[-1] == "workflow"
    assert (full.workflow_rate, full.workflow_seconds, full.workflow_backlog) == (5.0, 60.0, 500)
    assert phases(parse_args(["--skip-workflow"]))[-1] == "drain"
    quick = parse_args(["--runs", "1", "--skip-throughput", "--paths", "ours"])
    assert phases(quick) == ["ours", "workflow"]


def test_drain_only_is_only_the_drain() -> None:
    assert phases(parse_args(["--drain-only"])) == ["drain"]
    assert phases(parse_args(["--drain-only", "--skip-throughput"])) == []


def test_starts_only_is_only_the_start_drain() -> None:
    assert phases(parse_args(["--starts-only"])) == ["starts"]
    assert phases(parse_args(["--starts-only", "--full"])) == ["starts"]
