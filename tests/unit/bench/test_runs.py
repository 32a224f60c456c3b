"""Repeated runs: the interleaved order, the worst of the runs, the goals judged on it.

Arithmetic only; nothing here times anything.
"""

from __future__ import annotations

import math

import pytest

from bench import runs
from bench.report import verdict_table


def test_interleave_takes_run_one_of_every_path_first() -> None:
    assert runs.interleave(["a", "b", "c"], 2) == [
        (1, "a"),
        (1, "b"),
        (1, "c"),
        (2, "a"),
        (2, "b"),
        (2, "c"),
    ]
    assert runs.interleave(["a"], 1) == [(1, "a")]
    with pytest.raises(ValueError):
        runs.interleave(["a"], 0)


def test_worst_is_the_lowest_rate_or_the_highest_latency() -> None:
    assert runs.worst([12_000.0, 9_000.0, 15_000.0], higher_is_better=True) == 9_000.0
    assert runs.worst([18.0, 25.0, 12.0], higher_is_better=False) == 25.0


def test_a_run_without_a_figure_is_the_worst_possible() -> None:
    assert runs.worst([12_000.0, None, 15_000.0], higher_is_better=True) == 0.0
    assert math.isinf(runs.worst([18.0, None], higher_is_better=False))
    assert math.isinf(runs.worst([18.0, math.nan], higher_is_better=False))
    with pytest.raises(ValueError):
        runs.worst([], higher_is_better=True)


def test_a_goal_counts_for_the_worst_of_three() -> None:
    # Two quiet runs meet the goal, one busy run misses it: the goal is missed.
    p50 = runs.judge_at_most("p50 <= 20 ms", [12.0, 14.0, 119.0], 20.0, "ms")
    assert (p50.worst, p50.met) == (119.0, False)
    assert runs.judge_at_most("p50 <= 20 ms", [12.0, 20.0, 19.0], 20.0).met
    drain = runs.judge_at_least("drain >= 10k/s", [11_000.0, 10_500.0, 10_000.0], 10_000.0)
    assert (drain.worst, drain.met) == (10_000.0, True)
    unfinished = runs.judge_at_least("drain >= 10k/s", [11_000.0, None, 12_000.0], 10_000.0)
    assert (unfinished.worst, unfinished.met) == (0.0, False)


def test_verdict_text_by_unit() -> None:
    v = runs.judge_at_most("p", [1.25, 250.0, math.inf], 20.0, "ms")
    assert [v.text(x) for x in v.values] == ["1.2 ms", "250 ms", "∞ (not seen)"]
    assert runs.judge_at_least("r", [0.5], 0.75, "x").text(0.5) == "0.50x"
    assert runs.judge_at_least("r", [12_345.6], 1.0, "/s").text(12_345.6) == "12,346/s"
    assert runs.judge_at_least("r", [24.94], 25.0, "/s").text(24.94) == "24.9/s"
    assert runs.judge_at_most("m", [131.7], 300.0, "MiB").text(131.7) == "132 MiB"
    assert v.text(None) == "none (did not finish)"


def test_verdict_table_shows_every_run_the_worst_and_the_mark() -> None:
    text = verdict_table(
        [
            runs.judge_at_most("p50 <= 20 ms", [12.0, 119.0, 14.0], 20.0, "ms"),
            runs.judge_at_least("drain >= 0.75x", [0.8, 0.9, 0.76], 0.75, "x"),
        ]
    )
    lines = text.splitlines()
    assert lines[0] == "| goal (worst of the runs) | each run | worst |  |"
    assert lines[2] == "| p50 <= 20 ms | 12.0 ms, 119 ms, 14.0 ms | 119 ms | **missed** |"
    assert lines[3] == "| drain >= 0.75x | 0.80x, 0.90x, 0.76x | 0.76x | met |"


def test_load_around_text() -> None:
    assert runs.LoadAround(1.234, 5.0).text() == "1.23 → 5.00"
