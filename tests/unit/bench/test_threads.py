"""Per-thread scheduler times (bench/threads.py): parsing, the window's usage, /proc."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.threads import (
    TaskSnapshot,
    ThreadSampler,
    ThreadTimes,
    parse_schedstat,
    read_tasks,
    usage_between,
)


def test_parse_schedstat_reads_seconds_on_core_and_waiting() -> None:
    assert parse_schedstat("2500000000 500000000 1234\n") == ThreadTimes(2.5, 0.5)
    with pytest.raises(ValueError):
        parse_schedstat("")


def test_usage_names_the_busiest_thread_and_sums_the_others() -> None:
    start = TaskSnapshot(10.0, {1: ThreadTimes(1.0, 0.1), 2: ThreadTimes(0.5, 0.0)})
    end = TaskSnapshot(
        12.0,
        {
            1: ThreadTimes(2.6, 0.4),  # 1.6 s on a core, 0.3 s waiting
            2: ThreadTimes(0.7, 0.1),  # 0.2 s on a core
            3: ThreadTimes(0.2, 0.0),  # started inside the window: all of it counts
        },
    )
    usage = usage_between(start, end)
    assert usage is not None
    assert usage.busiest_on_core == pytest.approx(0.8)
    assert usage.busiest_waiting == pytest.approx(0.15)
    assert usage.busiest_wanted == pytest.approx(0.95)
    assert usage.others_on_core == pytest.approx(0.2)


def test_usage_without_a_span_or_threads_is_none() -> None:
    snap = TaskSnapshot(1.0, {1: ThreadTimes(0.0, 0.0)})
    assert usage_between(snap, snap) is None
    assert usage_between(snap, TaskSnapshot(2.0, {})) is None


def test_a_thread_that_ended_is_left_out() -> None:
    start = TaskSnapshot(0.0, {1: ThreadTimes(0.0, 0.0), 2: ThreadTimes(0.0, 0.0)})
    end = TaskSnapshot(1.0, {2: ThreadTimes(0.3, 0.0)})
    usage = usage_between(start, end)
    assert usage is not None and usage.busiest_on_core == pytest.approx(0.3)
    assert usage.others_on_core == 0.0


def test_the_sampler_sees_a_busy_process_want_a_core_all_the_time() -> None:
    # A child that only spins, as the bench samples `pipeline run`: its one thread runs
    # or waits for a core for nearly all of the window, however busy the machine is.
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        sampler = ThreadSampler(child.pid, period=0.05).start()
        time.sleep(0.2)  # past the interpreter's start-up
        first = time.time()
        time.sleep(1.0)
        last = time.time()
        sampler.stop()
    finally:
        child.kill()
        child.wait()
    usage = sampler.usage(first, last)
    assert usage is not None
    assert usage.busiest_wanted > 0.8
    assert usage.others_on_core < 0.1


def test_read_tasks_of_a_process_that_is_gone_is_none(tmp_path: Path) -> None:
    assert read_tasks(123456, proc=tmp_path) is None
