"""Readiness checks of `pipeline run` (pipeline/health.py): pure functions of the reader's stats."""

from __future__ import annotations

from pipeline import health


def test_the_reader_lag_check_concerns_only_the_slot_holder() -> None:
    lag = 10_000
    active = True
    check = health.reader_lag_check(lambda: active, lambda: lag, 1_000)
    assert check() == "replication lag 10000 bytes > 1000"
    active = False
    assert check() is None


def test_rows_the_reader_set_aside_without_a_copy_make_the_process_not_ready() -> None:
    unsent = 0
    check = health.reader_dead_letters_check(lambda: unsent)
    assert check() is None
    unsent = 2
    reason = check()
    assert reason is not None
    assert "2 row(s)" in reason
    assert "pipeline dead-letters list" in reason
