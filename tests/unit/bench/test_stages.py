"""The stage table: intervals between consecutive stages per bootstrap, and its markdown.

Hand-made timestamps; nothing here measures anything.
"""

from __future__ import annotations

import pytest

from bench import e2e_report, stages
from bench.latency import PathResult
from bench.runs import LoadAround


def _times() -> dict[str, dict[str, float]]:
    # Bootstrap a goes through every stage; b never got claimed; c has no Kafka time.
    return {
        "committed": {"a": 100.000, "b": 200.000, "c": 300.000},
        "kafka": {"a": 100.002, "b": 200.004},
        "pending": {"a": 100.050, "b": 200.030, "c": 300.060},
        "claimed": {"a": 100.060, "warm-up": 50.0},
        "start": {"a": 100.070, "warm-up": 50.1},
        "started_event": {"a": 100.200},
    }


def test_intervals_between_consecutive_stages() -> None:
    out = stages.intervals(_times())
    labels = [label for _, label in stages.STAGES[1:]]
    assert out[labels[0]] == pytest.approx([2.0, 4.0])  # commit -> Kafka: a, b
    assert out[labels[1]] == pytest.approx([48.0, 26.0])  # Kafka -> pending: a, b (not c)
    assert out[labels[2]] == pytest.approx([10.0])  # pending -> claimed: a only
    assert out[labels[3]] == pytest.approx([10.0])  # not the warm-up's, which has no commit
    assert out[labels[4]] == pytest.approx([130.0])
    assert out[stages.TO_START] == pytest.approx([70.0])
    assert out[stages.TOTAL] == pytest.approx([200.0])


def test_intervals_of_nothing() -> None:
    out = stages.intervals({})
    assert all(v == [] for v in out.values())


def test_stage_table_has_a_column_per_run_with_its_load() -> None:
    samples = stages.intervals(_times())
    text = stages.stage_table(
        [stages.StageRun(1, samples, "1.00 → 2.00"), stages.StageRun(2, {}, "")]
    )
    lines = text.splitlines()
    assert lines[0] == (
        "| interval | run 1: p50 / p99 ms (load 1.00 → 2.00) | run 2: p50 / p99 ms |"
    )
    assert len(lines) == 2 + len(stages.STAGES) - 1 + 2
    assert "| commit → Kafka append (broker `LogAppendTime`) | 2.0 / 4.0 (n=2) | - |" in text
    assert "| commit → `workflow_started` committed (whole) | 200 / 200 (n=1) | - |" in text


def _path(path: str, run: int, start_ms: list[float], missing: int = 0) -> PathResult:
    r = PathResult(path, run, load_average=LoadAround(0.5, 0.7))
    r.samples["commit_to_workflow_start"] = start_ms
    r.missing["commit_to_workflow_start"] = missing
    r.samples["commit_to_kafka"] = [1.0, 2.0, 10.0]
    r.missing["commit_to_kafka"] = 0
    return r


def test_latency_goals_on_the_worst_run_and_against_listen_in_the_same_run() -> None:
    results = [
        _path("listen", 1, [5.0, 6.0, 7.0]),
        _path("ours", 1, [10.0, 12.0, 14.0]),  # p50 12 = 2x listen's 6
        _path("listen", 2, [5.0, 5.0, 5.0]),
        _path("ours", 2, [15.0, 16.0, 900.0]),  # p50 16 = 3.2x listen's 5
    ]
    by_goal = {
        v.goal.split(" <=")[0].split(":")[0]: v for v in e2e_report.latency_verdicts(results)
    }
    p50 = by_goal["commit → workflow start p50"]
    assert (p50.values, p50.worst, p50.met) == ((12.0, 16.0), 16.0, True)
    assert not by_goal["commit → workflow start p99"].met  # 900 ms in run 2
    assert by_goal["commit → workflow start"].met  # none later than 1 s
    vs_listen = by_goal["commit → start p50"]
    assert vs_listen.values == pytest.approx((2.0, 3.2)) and not vs_listen.met
    assert by_goal["commit → Kafka p50"].worst == 2.0


def test_a_workflow_never_started_fails_the_latency_goals() -> None:
    results = [_path("ours", 1, [10.0, 12.0], missing=3)]
    verdicts = e2e_report.latency_verdicts(results)
    assert not verdicts[0].met  # p50 falls among the missing: infinitely late
    assert e2e_report.latency_verdicts([_path("listen", 1, [1.0])]) == []


def test_latency_rows_state_the_run_and_its_load() -> None:
    rows = e2e_report.latency_rows([_path("ours", 2, [10.0]), _path("listen", 1, [5.0])], 30)
    assert rows[0][:2] == ["1", "LISTEN/NOTIFY + worker"]
    assert all(r[-1] == "0.50 → 0.70" for r in rows)


def test_the_stage_table_of_a_kept_result_json() -> None:
    payload = {
        "paths": [
            {"path": "listen", "run": 1, "stages": {}},
            {
                "path": "ours",
                "run": 2,
                "stages": {stages.TOTAL: [5.0]},
                "load_average": {"before": 1.0, "after": 2.5},
            },
            {"path": "ours", "run": 1, "stages": {stages.TOTAL: [7.0]}, "load_average": None},
        ]
    }
    runs = stages.runs_from_payload(payload)
    assert [(r.run, r.load) for r in runs] == [(1, ""), (2, "1.00 → 2.50")]
    assert runs[1].samples[stages.TOTAL] == [5.0]
