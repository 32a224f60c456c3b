"""Where the machine's cores went during a window: CPU time of every process, by role.

The start drain (:mod:`bench.throughput`) compares ``pipeline run`` with a bare Temporal
client on the same two cores. Temporal's server answers a start only as fast as the CPU it
gets, and during ``pipeline run``'s drain the reader, Kafka and PostgreSQL take their
share too. This module samples ``/proc`` in a thread and reports, for a window (the
first start to the last), how many cores each role used: the measured reason behind the
ratio, written by ``make bench`` next to it.

The pure half (:func:`role_of`, :func:`cores_between`) is unit-tested; :class:`Sampler`
reads ``/proc``. A process that exits inside a window loses its share (its CPU time leaves
``/proc`` with it); one that starts inside it counts from zero.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# Roles in the order reports show them. PostgreSQL and Temporal's server are told by their
# executable (a backend's title is "postgres: ...", and may name Temporal's database; the
# server's arguments may name PostgreSQL), the rest by the first pattern their command line
# holds.
ROLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("reader", ("pipeline.reader_process", "pipeline reader")),
    ("bare agent", ("bench.bare_agent",)),
    ("pipeline run", ("pipeline run",)),
    ("worker", ("bench.standin", "pipeline worker")),
    ("bench client", ("bench.run", "bench.throughput")),
    ("Kafka", ("kafka.Kafka", "org.apache.kafka", "kafka")),
)
TEMPORAL = "Temporal server"
EXECUTABLES: tuple[tuple[str, str], ...] = (
    ("PostgreSQL", "postgres"),  # the postmaster, and every backend ("postgres: ...")
    (TEMPORAL, "temporal"),  # the CLI's dev server, or temporal-server itself
)
OTHER = "other"
ROLE_ORDER: tuple[str, ...] = (
    *(name for name, _ in ROLES),
    *(name for name, _ in EXECUTABLES),
    OTHER,
)

# Sampling period: a window of ~1.5 s (200 starts at the bare client's rate) still gets
# several samples; one scan of /proc costs a few ms.
PERIOD_S = 0.25


def role_of(cmdline: str) -> str:
    """The role of a process from its command line (arguments joined by spaces)."""
    executable = cmdline.split(" ", 1)[0].rsplit("/", 1)[-1]
    for name, prefix in EXECUTABLES:
        if executable.startswith(prefix):
            return name
    for name, patterns in ROLES:
        if any(p in cmdline for p in patterns):
            return name
    return OTHER


@dataclass(frozen=True, slots=True)
class Machine:
    """The whole machine's CPU seconds so far, from ``/proc/stat``'s ``cpu`` line: busy
    (user, nice, system, irq, softirq: every process, the kernel's own work included, and
    those that exit) and stolen (time the hypervisor gave this VM's CPUs to another)."""

    busy: float
    steal: float


def parse_machine(stat_text: str, tick: int) -> Machine:
    """:class:`Machine` from the text of ``/proc/stat`` (pure)."""
    for line in stat_text.splitlines():
        if line.startswith("cpu "):
            ticks = [int(v) for v in line.split()[1:]]
            user, nice, system, _idle, _iowait, irq, softirq, steal = (ticks + [0] * 8)[:8]
            return Machine((user + nice + system + irq + softirq) / tick, steal / tick)
    raise ValueError("no cpu line in /proc/stat")


def read_machine(stat: Path = Path("/proc/stat")) -> Machine | None:
    """The machine's figures now; None where there is no ``/proc/stat``."""
    try:
        text = stat.read_text()
    except OSError:
        return None
    return parse_machine(text, os.sysconf("SC_CLK_TCK"))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """CPU seconds (user + system) of every process at one moment, with its role."""

    at: float  # time.time()
    cpu: Mapping[int, tuple[str, float]]  # pid -> (role, CPU seconds so far)
    machine: Machine | None = None  # the whole machine's, at the same moment


def machine_between(start: Snapshot, end: Snapshot) -> tuple[float, float] | None:
    """(busy cores, stolen cores) of the whole machine from ``start`` to ``end``; None
    without the machine's figures or a span."""
    span = end.at - start.at
    if start.machine is None or end.machine is None or span <= 0:
        return None
    return (
        (end.machine.busy - start.machine.busy) / span,
        (end.machine.steal - start.machine.steal) / span,
    )


def cores_between(start: Snapshot, end: Snapshot) -> dict[str, float]:
    """Cores each role used from ``start`` to ``end`` (CPU seconds / wall seconds).

    A pid missing from ``start`` started in between: all of its CPU counts. A pid missing
    from ``end`` exited: its share is lost (it cannot be read any more). Roles that used
    nothing are left out.
    """
    span = end.at - start.at
    if span <= 0:
        return {}
    used: dict[str, float] = {}
    for pid, (role, cpu) in end.cpu.items():
        before = start.cpu.get(pid)
        delta = cpu - (before[1] if before is not None and before[0] == role else 0.0)
        if delta > 0:
            used[role] = used.get(role, 0.0) + delta
    return {role: used[role] / span for role in ROLE_ORDER if used.get(role, 0.0) / span >= 0.005}


def read_snapshot(proc: Path = Path("/proc")) -> Snapshot:
    """Every process's CPU seconds now, with its role (read each time: a child between
    its fork and its exec still shows its parent's command line)."""
    tick = os.sysconf("SC_CLK_TCK")
    at = time.time()
    cpu: dict[int, tuple[str, float]] = {}
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            stat = Path(entry.path, "stat").read_text()
            raw = Path(entry.path, "cmdline").read_bytes()
        except OSError:  # gone since the listing
            continue
        role = role_of(raw.replace(b"\0", b" ").decode(errors="replace"))
        fields = stat.rsplit(")", 1)[1].split()
        cpu[pid] = (role, (int(fields[11]) + int(fields[12])) / tick)
    return Snapshot(at, cpu, read_machine(proc / "stat"))


@dataclass
class Sampler:
    """Samples :func:`read_snapshot` every ``period`` seconds while in its ``with`` block."""

    period: float = PERIOD_S
    snapshots: list[Snapshot] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Sampler:
        self._stop.clear()
        self.snapshots.append(read_snapshot())
        self._thread = threading.Thread(target=self._run, name="cpu-share", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.snapshots.append(read_snapshot())

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.snapshots.append(read_snapshot())

    def cores(self, first: float, last: float, *, inner: bool = False) -> dict[str, float]:
        """Cores by role over the sampled window around ``first``..``last`` (time.time()):
        from the last snapshot at or before ``first`` to the first at or after ``last``;
        ``inner``: the snapshots inside it instead (for processes stopped right after
        ``last``, whose CPU the first snapshot after it may no longer see)."""
        pick = inner_window if inner else window
        return cores_between(*pick(self.snapshots, first, last))

    def machine(
        self, first: float, last: float, *, inner: bool = False
    ) -> tuple[float, float] | None:
        """(busy, stolen) cores of the whole machine over the same window as :meth:`cores`."""
        pick = inner_window if inner else window
        return machine_between(*pick(self.snapshots, first, last))


def inner_window(snapshots: list[Snapshot], first: float, last: float) -> tuple[Snapshot, Snapshot]:
    """The first snapshot at or after ``first`` and the last at or before ``last`` (the
    bracketing ones of :func:`window` where fewer than two lie inside)."""
    inside = [s for s in snapshots if first <= s.at <= last]
    if len(inside) < 2:
        return window(snapshots, first, last)
    return inside[0], inside[-1]


def window(snapshots: list[Snapshot], first: float, last: float) -> tuple[Snapshot, Snapshot]:
    """The snapshots that bracket ``first``..``last`` (the outermost ones if none does)."""
    if not snapshots:
        raise ValueError("no snapshots taken")
    before = [s for s in snapshots if s.at <= first]
    after = [s for s in snapshots if s.at >= last]
    return (before[-1] if before else snapshots[0], after[0] if after else snapshots[-1])


# Before each drain of the event-drain phase, the machine is let settle, so that work the
# phase before it left (thousands of workflows that Temporal's server and PostgreSQL may
# still be finishing) cannot take cores from the first drain only (measured 2026-12-03:
# the machine was quiet at once before 8 of 9 drains). Idle, the services use about 0.1-0.3 of a core (Temporal's server polls its
# queues); "quiet" is below QUIET_CORES for QUIET_HOLD_S, waited for at most QUIET_LIMIT_S.
QUIET_CORES = 0.5
QUIET_HOLD_S = 3.0
QUIET_LIMIT_S = 60.0
QUIET_STEP_S = 0.5


@dataclass(frozen=True, slots=True)
class Quiet:
    """How a wait for a quiet machine ended."""

    waited_s: float
    busy_cores: float  # over the last step before it ended
    reached: bool  # False: QUIET_LIMIT_S passed first


def quiet_step(held_s: float, busy_cores: float, step_s: float, max_cores: float) -> float:
    """How long the machine has been quiet after one more step (pure): reset by a busy one."""
    return held_s + step_s if busy_cores < max_cores else 0.0


def wait_quiet(
    max_cores: float = QUIET_CORES,
    hold_s: float = QUIET_HOLD_S,
    limit_s: float = QUIET_LIMIT_S,
    step_s: float = QUIET_STEP_S,
) -> Quiet:
    """Block until the whole machine used fewer than ``max_cores`` for ``hold_s`` in a row,
    or ``limit_s`` passed (blocking: call it in a thread from async code)."""
    started = time.monotonic()
    held = 0.0
    busy = 0.0
    last = read_machine()
    last_at = time.monotonic()
    while True:
        time.sleep(step_s)
        now = read_machine()
        now_at = time.monotonic()
        if now is None or last is None:  # no /proc/stat: nothing to wait for
            return Quiet(now_at - started, 0.0, True)
        busy = (now.busy - last.busy) / max(now_at - last_at, 1e-9)
        held = quiet_step(held, busy, now_at - last_at, max_cores)
        last, last_at = now, now_at
        if held >= hold_s:
            return Quiet(now_at - started, busy, True)
        if now_at - started >= limit_s:
            return Quiet(now_at - started, busy, False)


def roles_used(cores: list[Mapping[str, float]]) -> list[str]:
    """The roles, in :data:`ROLE_ORDER`, that used any core in one of ``cores`` (pure)."""
    return [role for role in ROLE_ORDER if any(role in c for c in cores)]


def core_cells(
    cores: Mapping[str, float], machine: tuple[float, float] | None, roles: list[str]
) -> list[str]:
    """A table's cells: the cores of each of ``roles`` ("-" for none), then the whole
    machine's busy and stolen cores ("-" unknown) (pure)."""
    cells = [f"{cores[r]:.2f}" if r in cores else "-" for r in roles]
    if machine is None:
        return [*cells, "-", "-"]
    return [*cells, f"{machine[0]:.2f}", f"{machine[1]:.2f}"]
