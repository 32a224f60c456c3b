"""bench.cpu_share: which process plays which role, and the cores each role used."""

from __future__ import annotations

import os
import time

import pytest

from bench import cpu_share
from bench.cpu_share import (
    OTHER,
    Sampler,
    Snapshot,
    cores_between,
    read_snapshot,
    role_of,
    window,
)
from bench.e2e_report import CORE_ROLES, start_core_rows
from bench.throughput import StartDrain


@pytest.mark.parametrize(
    ("cmdline", "role"),
    [
        ("/w/.venv/bin/python3 -m pipeline.reader_process 3 4242", "reader"),
        ("/w/.venv/bin/python3 /w/.venv/bin/pipeline reader", "reader"),
        ("/w/.venv/bin/python3 /w/.venv/bin/pipeline run", "pipeline run"),
        ("/w/.venv/bin/python -m bench.standin", "worker"),
        ("/w/.venv/bin/python3 /w/.venv/bin/pipeline worker", "worker"),
        ("/w/.venv/bin/python -m bench.run --starts-only", "bench client"),
        # Kafka's classpath lives under ~/.cache/pipeline, like Temporal's binary: the
        # broker is still Kafka, not "pipeline run" and not Temporal.
        (
            "java -Xmx1G -cp /root/.cache/pipeline/kafka/libs/* kafka.Kafka /tmp/server.properties",
            "Kafka",
        ),
        ("postgres: walsender root [local] START_REPLICATION", "PostgreSQL"),
        ("/usr/lib/postgresql/15/bin/postgres -D /w/.cache/pg", "PostgreSQL"),
        ("/w/.venv/bin/temporal server start-dev --port 57233", "Temporal server"),
        # Temporal's own server on PostgreSQL (bench --full): its config path names
        # PostgreSQL, and the backends serving it name Temporal's database.
        (
            "/root/.cache/pipeline/temporal-server-1.32.1/temporal-server --config-file "
            "/w/.cache/dev/temporal-postgres/temporal-server.yaml --allow-no-auth start",
            "Temporal server",
        ),
        ("postgres: root temporal 127.0.0.1(50122) idle", "PostgreSQL"),
        ("postgres: root temporal_visibility 127.0.0.1(50124) SELECT", "PostgreSQL"),
        ("/root/.cache/pipeline/temporal-server-1.32.1/temporal-server start", "Temporal server"),
        ("/usr/bin/bash -c sleep 1", OTHER),
        ("", OTHER),
    ],
)
def test_role_of(cmdline: str, role: str) -> None:
    assert role_of(cmdline) == role


def test_cores_between_counts_each_role_over_the_window() -> None:
    start = Snapshot(
        100.0,
        {1: ("Temporal server", 10.0), 2: ("Kafka", 5.0), 3: ("pipeline run", 1.0), 9: ("x", 0)},
    )
    end = Snapshot(
        102.0,
        {
            1: ("Temporal server", 11.5),  # 1.5 s of CPU in 2 s
            2: ("Kafka", 5.4),
            3: ("pipeline run", 2.0),
            4: ("reader", 0.3),  # started inside the window: all of it counts
            5: ("pipeline run", 0.2),  # a second process of the same role adds up
        },
    )
    cores = cores_between(start, end)
    assert cores == pytest.approx(
        {"Temporal server": 0.75, "pipeline run": 0.6, "reader": 0.15, "Kafka": 0.2}
    )
    # Roles come in report order (ROLES), whatever order the pids were in.
    assert list(cores) == ["reader", "pipeline run", "Kafka", "Temporal server"]


def test_cores_between_drops_idle_roles_and_handles_a_reused_pid() -> None:
    start = Snapshot(0.0, {1: ("PostgreSQL", 3.0), 2: ("worker", 7.0)})
    # pid 2 exited and was reused by a reader: its CPU is the new process's, from zero.
    end = Snapshot(1.0, {1: ("PostgreSQL", 3.001), 2: ("reader", 0.5)})
    assert cores_between(start, end) == pytest.approx({"reader": 0.5})
    assert cores_between(end, end) == {}


def test_window_brackets_the_span_with_the_nearest_outer_snapshots() -> None:
    snaps = [Snapshot(t, {}) for t in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert [s.at for s in window(snaps, 0.3, 0.6)] == [0.25, 0.75]
    assert [s.at for s in window(snaps, 0.25, 0.75)] == [0.25, 0.75]
    assert [s.at for s in window(snaps, -1.0, 9.0)] == [0.0, 1.0]
    with pytest.raises(ValueError, match="no snapshots"):
        window([], 0.0, 1.0)


def test_read_snapshot_sees_this_process_spend_cpu() -> None:
    before = read_snapshot()
    assert os.getpid() in before.cpu
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    after = read_snapshot()
    role = after.cpu[os.getpid()][0]
    assert cores_between(before, after).get(role, 0.0) > 0.0


def test_sampler_samples_until_its_block_ends() -> None:
    with Sampler(period=0.02) as cpu:
        started = time.time()
        deadline = time.process_time() + 0.2
        while time.process_time() < deadline:
            pass
        ended = time.time()
    assert len(cpu.snapshots) >= 3
    assert cpu.snapshots[-1].at >= ended
    assert sum(cpu.cores(started, ended).values()) > 0.0


def test_start_core_rows_show_both_paths_in_the_tables_columns() -> None:
    drain = StartDrain(bootstraps=200, run=2)
    drain.ours_cores = {"Temporal server": 0.76, "pipeline run": 0.42, "Kafka": 0.25}
    drain.bare_cores = {"Temporal server": 1.11, "worker": 0.19}
    rows = start_core_rows([drain, StartDrain(bootstraps=200, run=3)])
    assert [r[:2] for r in rows] == [["2", "ours"], ["2", "bare"]]
    ours = dict(zip(CORE_ROLES, rows[0][2:-1], strict=True))
    assert ours["Temporal server"] == "0.76"
    assert ours["reader"] == "-"
    assert rows[0][-1] == "1.43"
    assert rows[1][-1] == "1.30"


def test_the_core_table_has_a_column_for_every_role_the_sampler_files() -> None:
    """A role added to bench.cpu_share gets its column (Temporal's server first)."""
    assert sorted(CORE_ROLES) == sorted(cpu_share.ROLE_ORDER)
    assert CORE_ROLES[0] == "Temporal server"


STAT = """cpu  100 5 40 900 7 3 2 10 0 0
cpu0 50 2 20 450 3 1 1 5 0 0
intr 12345
"""


def test_parse_machine_counts_busy_and_stolen_ticks() -> None:
    m = cpu_share.parse_machine(STAT, tick=100)
    # user + nice + system + irq + softirq; idle and iowait are not busy, steal apart.
    assert m.busy == pytest.approx((100 + 5 + 40 + 3 + 2) / 100)
    assert m.steal == pytest.approx(0.10)
    with pytest.raises(ValueError, match="no cpu line"):
        cpu_share.parse_machine("intr 1\n", tick=100)


def test_machine_between_is_cores_over_the_span() -> None:
    start = Snapshot(10.0, {}, cpu_share.Machine(busy=5.0, steal=1.0))
    end = Snapshot(12.0, {}, cpu_share.Machine(busy=8.0, steal=1.5))
    busy, stolen = cpu_share.machine_between(start, end) or (0.0, 0.0)
    assert busy == pytest.approx(1.5) and stolen == pytest.approx(0.25)
    assert cpu_share.machine_between(Snapshot(10.0, {}), end) is None
    assert cpu_share.machine_between(end, end) is None


def test_read_snapshot_reads_the_machine_too() -> None:
    snap = read_snapshot()
    assert snap.machine is not None and snap.machine.busy > 0


def test_quiet_is_reset_by_a_busy_step() -> None:
    held = 0.0
    for busy in (0.2, 0.3, 0.9, 0.1, 0.1):
        held = cpu_share.quiet_step(held, busy, 0.5, max_cores=0.5)
    assert held == pytest.approx(1.0)  # the two steps after the busy one


def test_wait_quiet_gives_up_at_its_limit_on_a_busy_machine() -> None:
    # max_cores 0: no machine is that quiet, so the wait ends at its limit, not reached.
    quiet = cpu_share.wait_quiet(max_cores=0.0, hold_s=1.0, limit_s=0.3, step_s=0.1)
    assert not quiet.reached and quiet.waited_s >= 0.3
    quiet = cpu_share.wait_quiet(max_cores=100.0, hold_s=0.2, limit_s=5.0, step_s=0.1)
    assert quiet.reached and quiet.waited_s < 1.0


def test_inner_window_keeps_to_the_snapshots_inside() -> None:
    snaps = [Snapshot(t, {}) for t in (1.0, 2.0, 3.0, 4.0, 5.0)]
    first, last = cpu_share.inner_window(snaps, 1.5, 4.5)
    assert (first.at, last.at) == (2.0, 4.0)
    # Fewer than two inside: the bracketing ones.
    first, last = cpu_share.inner_window(snaps, 2.2, 2.8)
    assert (first.at, last.at) == (2.0, 3.0)


def test_load_core_table_lists_the_roles_each_path_used() -> None:
    from bench.e2e_report import load_core_table
    from bench.latency import PathResult

    ours = PathResult("ours", 1, cores={"pipeline run": 0.5, "Temporal server": 0.4})
    ours.machine = (1.95, 0.02)
    bare = PathResult("direct", 1, cores={"Temporal server": 0.6})
    bare.machine = (1.2, 0.0)
    old = PathResult("listen", 1)  # from before the machine was watched: left out
    header, rows = load_core_table([ours, bare, old])
    assert header == ["run", "path", "Temporal server", "pipeline run", "machine busy", "stolen"]
    assert [row[2:] for row in rows] == [
        ["0.60", "-", "1.20", "0.00"],
        ["0.40", "0.50", "1.95", "0.02"],
    ]
    assert load_core_table([old]) == (["run", "path", "machine busy", "stolen"], [])
