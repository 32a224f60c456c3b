"""The real workflow's goals on the worst run, and its markdown.

Built from hand-made results; nothing here measures anything.
"""

from __future__ import annotations

import math

import pytest

from bench.report import verdict_table
from bench.workflow_bench import chain_gaps
from bench.workflow_report import (
    Result,
    chain_table,
    cpu_bound_lines,
    cpu_ceiling,
    cpu_table,
    latency_reason_lines,
    load_text,
    run_rows,
    section,
    verdicts,
)
from pipeline import events as ev


def _result(
    run: int,
    completed_per_s: float,
    p50: float,
    *,
    completed: int = 150,
    missing: int = 0,
    rate: float = 5.0,
) -> Result:
    r = Result(backlog=150, rate=rate, seconds=20.0, run=run)
    r.completed_per_second = completed_per_s
    r.backlog_completed = completed
    r.backlog_seconds = 12.5
    r.backlog_per_second = completed / 12.5
    r.latency_ms = {"n": 100, "p50": p50, "p95": p50 * 2, "p99": p50 * 3, "max": p50 * 4}
    r.latency_missing = missing
    r.load_before = [1.5, 1.0, 0.5]
    r.load_after_latency = [2.0, 1.1, 0.6]
    r.load_after_saturation = [3.25, 1.2, 0.7]
    r.chain_gaps_p50_ms = {"initiated -> pending": 12.0 * run}
    r.history_p50_ms = [("WORKFLOW_EXECUTION_STARTED", 0.0), ("WORKFLOW_TASK_STARTED", 10.2)]
    r.cpu_ms_per_bootstrap = {"worker": 80.0, "pipeline run": 40.0}
    r.cpu_ms_per_bootstrap_steady = {"worker": 90.0, "pipeline run": 50.0}
    return r


def test_each_goal_counts_for_the_worst_run() -> None:
    sat, lat = verdicts([_result(2, 30.0, 90.0), _result(1, 27.0, 140.0), _result(3, 40.0, 60.0)])
    assert sat.values == (27.0, 30.0, 40.0)  # in run order
    assert sat.worst == 27.0 and sat.met
    assert lat.worst == 140.0 and lat.met


def test_one_bad_run_misses_the_goal() -> None:
    sat, lat = verdicts([_result(1, 30.0, 90.0), _result(2, 24.9, 151.0)])
    assert sat.worst == 24.9 and not sat.met
    assert lat.worst == 151.0 and not lat.met
    text = verdict_table([sat, lat])
    assert text.count("**missed**") == 2
    assert "| 30.0/s, 24.9/s | 24.9/s | **missed** |" in text


def test_a_run_without_completions_is_the_worst() -> None:
    nothing = _result(2, 0.0, math.inf, completed=1, missing=100)
    nothing.latency_ms = None
    sat, lat = verdicts([_result(1, 30.0, 90.0), nothing])
    assert sat.values == (30.0, None)
    assert sat.worst == 0.0 and not sat.met
    assert lat.values == (90.0, None)
    assert math.isinf(lat.worst) and not lat.met


def test_a_p50_among_the_never_completed_is_infinite_and_missed() -> None:
    (_, lat) = verdicts([_result(1, 30.0, math.inf, missing=60)])
    assert math.isinf(lat.worst) and not lat.met
    assert "∞" in verdict_table([lat])


def test_the_latency_goal_names_a_rate_other_than_five() -> None:
    (_, lat) = verdicts([_result(1, 30.0, 90.0, rate=2.0)])
    assert "measured at 2/s" in lat.goal
    (_, at_five) = verdicts([_result(1, 30.0, 90.0)])
    assert "measured at" not in at_five.goal


def test_no_runs_no_goals() -> None:
    assert verdicts([]) == []
    assert section([], "dev") == []


def test_every_run_is_a_row_with_its_load() -> None:
    rows = run_rows([_result(2, 30.0, 90.0), _result(1, 27.0, 140.0, missing=3)])
    assert [r[0] for r in rows] == ["1", "2"]
    assert rows[0][1] == "27.0"
    assert rows[0][4] == "97 / 100"  # completed / initiated in the steady phase
    assert rows[0][5] == "140"
    assert load_text(_result(1, 1.0, 1.0)) == "1.50 → 2.00 → 3.25"
    assert rows[0][9] == "1.50 → 2.00 → 3.25"


def test_too_few_completions_show_no_rate() -> None:
    rows = run_rows([_result(1, 0.0, 90.0, completed=1)])
    assert rows[0][1] == "-"


def test_cpu_and_chain_tables_have_a_column_per_run() -> None:
    runs = [_result(1, 30.0, 90.0), _result(2, 30.0, 90.0)]
    cpu = cpu_table(runs)
    assert "| worker | 80.0 / 90.0 | 80.0 / 90.0 |" in cpu
    assert "| total | 120.0 / 140.0 | 120.0 / 140.0 |" in cpu
    chain = chain_table(runs)
    assert "| initiated -> pending | 12.0 | 24.0 |" in chain


def test_section_states_the_load_and_temporal() -> None:
    text = "\n".join(section([_result(1, 30.0, 90.0)], "SQLite (the CLI's dev server)"))
    assert text.startswith("### Real workflow and worker")
    assert "SQLite (the CLI's dev server)" in text
    assert "5 `organization.bootstrap.initiated`/s for 20 s" in text
    assert "backlog of 150" in text
    assert "WORKFLOW_TASK_STARTED" in text


def test_the_cpu_per_bootstrap_bounds_the_saturation_rate() -> None:
    assert cpu_ceiling(250.0, 2) == 8.0
    assert cpu_ceiling(0.0, 2) is None
    (line,) = cpu_bound_lines([_result(1, 7.5, 90.0)], 2)
    # 80 + 40 ms per bootstrap: 2 CPUs allow 16.7/s; the worker alone 12.5/s per CPU
    assert "120 ms of CPU per bootstrap" in line
    assert "2 CPUs allow at most 16.7/s" in line and "measured 7.5/s" in line
    assert "worker, 80 ms: 12.5/s per CPU" in line
    assert cpu_bound_lines([_result(1, 7.5, 90.0)], None) == []
    text = "\n".join(section([_result(1, 7.5, 90.0)], "dev", 2))
    assert "What the CPU allows" in text


def test_the_latency_is_split_in_its_halves_and_its_dearest_step() -> None:
    r = _result(1, 30.0, 900.0)
    r.chain_gaps_p50_ms = {
        "initiated -> pending": 100.0,
        "created -> dns": 170.0,
        "to the workflow: initiated -> workflow_started": 250.0,
        "the workflow: workflow_started -> queue.completed": 640.0,
    }
    (line,) = latency_reason_lines([r])
    assert "p50 900 ms" in line
    assert "to the workflow: initiated -> workflow_started p50 250 ms" in line
    assert "the workflow: workflow_started -> queue.completed p50 640 ms" in line
    assert line.endswith("the dearest step created -> dns, p50 170 ms.")


def test_chain_gaps_per_step_and_per_half() -> None:
    times = {
        ev.BOOTSTRAP_INITIATED: {"a": 10.0, "b": 20.0},
        ev.QUEUE_PENDING: {"a": 10.1, "b": 20.3},
        ev.BOOTSTRAP_WORKFLOW_STARTED: {"a": 10.5},
        ev.QUEUE_COMPLETED: {"a": 11.5},
    }
    gaps = chain_gaps(times, ["a", "b"])
    assert gaps[f"{ev.BOOTSTRAP_INITIATED} -> {ev.QUEUE_PENDING}"] == pytest.approx(100.0)
    assert gaps[
        f"to the workflow: {ev.BOOTSTRAP_INITIATED} -> {ev.BOOTSTRAP_WORKFLOW_STARTED}"
    ] == (pytest.approx(500.0))
    assert gaps[f"the workflow: {ev.BOOTSTRAP_WORKFLOW_STARTED} -> {ev.QUEUE_COMPLETED}"] == (
        pytest.approx(1000.0)
    )
    assert f"{ev.QUEUE_PENDING} -> {ev.QUEUE_CLAIMED}" not in gaps  # no claimed seen


def test_make_bench_writes_the_phase_and_its_goals_into_its_section() -> None:
    from bench.e2e_body import build_body
    from bench.run import parse_args

    args = parse_args(["--runs", "2", "--skip-throughput", "--paths", ""])
    data = {
        "latency_results": [],
        "starts": [],
        "drain_rounds": [],
        "machine": {"nproc": "2", "temporal_persistence": "SQLite (the CLI's dev server)"},
        "workflow": [_result(1, 30.0, 90.0), _result(2, 20.0, 200.0)],
        "date": "2026-12-02 08:00 UTC",
        "command": "python -m bench.run",
    }
    body = build_body(data, args)
    assert "### Real workflow and worker" in body
    assert "20 s at 5/s and 150 bootstraps" in body  # the short mode's scaling
    assert "| real workflow: bootstraps completed/s at saturation >= 25 | 30.0/s, 20.0/s" in body
    assert "| 90.0 ms, 200 ms | 200 ms | **missed** |" in body
    assert "2 CPUs allow at most" in body
    assert body.index("### Real workflow") < body.index("### Goals") < body.index("### Machine")
