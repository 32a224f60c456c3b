"""The event drain's arithmetic and its markdown: rates, CPU per event, ratios, verdicts.

Built from hand-made results; nothing here measures anything.
"""

from __future__ import annotations

import pytest

from bench import drain_fill
from bench.drain import One, Round, cpu_at
from bench.drain_report import drain_section, run_ratios, thread_rows, verdicts
from bench.runs import LoadAround
from bench.threads import ThreadUsage


def _one(kind: str, after_first: float, *, complete: bool = True) -> One:
    # 10,000 events; started at 100, first record out at 102, done after_first later.
    return One(
        kind,
        10_000,
        started=100.0,
        first_out=102.0,
        done=102.0 + after_first,
        load=LoadAround(1.0, 2.0),
        cpu_seconds=3.0,
        cpu_at_first=1.0,
        peak_rss_mib=120.0,
        complete=complete,
    )


def _round(run: int, reader: float, bare: float, ours: float, *, ours_done: bool = True) -> Round:
    rnd = Round(run, 10_000, 10, 5.0)
    rnd.drains = {
        "reader": _one("reader", reader),
        "bare": _one("bare", bare),
        "ours": _one("ours", ours, complete=ours_done),
    }
    return rnd


def test_rates_and_cpu_per_event() -> None:
    one = _one("ours", 0.5)
    assert one.rate_after_first == pytest.approx(20_000.0)
    assert one.rate == pytest.approx(10_000 / 2.5)
    assert one.cpu_us_per_event == pytest.approx(300.0)
    assert one.cpu_us_per_event_after_first == pytest.approx(200.0)
    unfinished = _one("ours", 0.5, complete=False)
    assert unfinished.rate is None and unfinished.rate_after_first is None
    assert unfinished.cpu_us_per_event is None


def test_cpu_at_interpolates_between_samples() -> None:
    samples = [(10.0, 1.0), (12.0, 2.0), (11.0, 1.0)]
    assert cpu_at(samples, 11.5) == pytest.approx(1.5)
    assert cpu_at(samples, 5.0) == 1.0
    assert cpu_at(samples, 20.0) == 2.0
    assert cpu_at([], 1.0) is None


def test_ratios_of_one_round() -> None:
    vs_bare, vs_reader = run_ratios(_round(1, reader=0.25, bare=2.0, ours=4.0))
    assert vs_bare == pytest.approx(0.5)
    assert vs_reader == pytest.approx(0.0625)
    assert run_ratios(_round(1, 0.25, 2.0, 4.0, ours_done=False)) == (None, None)


def test_drain_goals_count_for_the_worst_round() -> None:
    rounds = [
        _round(1, reader=0.2, bare=1.0, ours=0.8),  # 12,500/s, 1.25x bare
        _round(2, reader=0.2, bare=1.0, ours=1.25),  # 8,000/s, 0.8x bare
        _round(3, reader=0.2, bare=1.0, ours=0.9),
    ]
    eps, vs_bare = verdicts(rounds)
    assert eps.worst == pytest.approx(8_000.0) and not eps.met
    assert vs_bare.worst == pytest.approx(0.8) and vs_bare.met
    rounds.append(_round(4, 0.2, 1.0, 0.5, ours_done=False))
    eps, vs_bare = verdicts(rounds)
    assert eps.worst == 0.0 and vs_bare.worst == 0.0 and not vs_bare.met


def test_section_reports_every_run_and_its_load() -> None:
    rounds = [_round(r, 0.2, 1.0, 0.8) for r in (1, 2, 3)]
    rounds[2].drains["ours"].complete = False
    rounds[2].drains["ours"].covered_at_limit = 4_321
    text = "\n".join(drain_section(rounds, 1000))
    rows = [line for line in text.splitlines() if line.startswith("| 3 | `pipeline run`")]
    assert len(rows) == 1 and "did not finish" in rows[0] and "4,321" in rows[0]
    assert text.count("1.00 → 2.00") == 9  # every drain of every run states its load
    assert "| 1 | 1.25x | 0.25x |" in text
    assert drain_section([], 1000) == []


def test_bootstrap_count_of_the_backlog() -> None:
    assert drain_fill.bootstraps_in(10_000, 1000) == 10
    assert drain_fill.bootstraps_in(100_000, 1000) == 100
    assert drain_fill.bootstraps_in(1_500, 1000, sessions=2) == 2  # 0 and 1000
    # Brute force: the procedure emits a bootstrap for every i % every == 0 in [0, count).
    for count, every in ((999, 7), (1234, 100), (5, 10)):
        assert drain_fill.bootstraps_in(count, every) == sum(
            1 for i in range(count) if i % every == 0
        )


def test_the_machine_table_names_the_roles_that_used_cores() -> None:
    from bench.cpu_share import Quiet

    rnd = _round(1, reader=0.2, bare=1.0, ours=0.8)
    rnd.drains["reader"].quiet = Quiet(4.5, 0.3, True)
    rnd.drains["reader"].cores = {"reader": 0.9, "PostgreSQL": 0.6}
    rnd.drains["reader"].machine = (1.7, 0.05)
    rnd.drains["ours"].quiet = Quiet(60.0, 0.8, False)
    rnd.drains["ours"].cores = {"pipeline run": 1.0, "Temporal server": 0.2}
    lines = "\n".join(drain_section([rnd], 1000))
    assert "**The machine during each drain.**" in lines
    assert "| run | drain | waited for a quiet machine, s | reader | pipeline run |" in lines
    assert "| 1 | reader | 4.5 | 0.90 | - | 0.60 | - | 1.70 | 0.05 |" in lines
    assert "| 1 | ours | 60.0 (still busy) | - | 1.00 | - | 0.20 | - | - |" in lines


def test_results_from_before_the_machine_was_watched_have_no_machine_table() -> None:
    lines = "\n".join(drain_section([_round(1, 0.2, 1.0, 0.8)], 1000))
    assert "The machine during each drain" not in lines


def test_the_threads_of_pipeline_run_are_shown_for_the_whole_window_and_its_last_half() -> None:
    rnd = _round(1, 0.5, 1.0, 1.0)
    assert thread_rows([rnd]) == []  # results from before the threads were watched
    assert "threads during its drain" not in "\n".join(drain_section([rnd], 1000))
    rnd.drains["ours"].threads = ThreadUsage(0.62, 0.25, 0.08)
    rnd.drains["ours"].threads_last_half = ThreadUsage(0.8, 0.15, 0.07)
    assert thread_rows([rnd]) == [
        ["1", "whole", "0.62", "0.25", "0.87", "0.08"],
        ["1", "last half", "0.80", "0.15", "0.95", "0.07"],
    ]
    text = "\n".join(drain_section([rnd], 1000))
    assert "| 1 | last half | 0.80 | 0.15 | 0.95 | 0.07 |" in text
