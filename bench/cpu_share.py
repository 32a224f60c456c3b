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
    ("reader", ("pipeline.reader_process",)),
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
class Snapshot:
    """CPU seconds (user + system) of every process at one moment, with its role."""

    at: float  # time.time()
    cpu: Mapping[int, tuple[str, float]]  # pid -> (role, CPU seconds so far)


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
    return Snapshot(at, cpu)


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

    def cores(self, first: float, last: float) -> dict[str, float]:
        """Cores by role over the sampled window around ``first``..``last`` (time.time()):
        from the last snapshot at or before ``first`` to the first at or after ``last``."""
        return cores_between(*window(self.snapshots, first, last))


def window(snapshots: list[Snapshot], first: float, last: float) -> tuple[Snapshot, Snapshot]:
    """The snapshots that bracket ``first``..``last`` (the outermost ones if none does)."""
    if not snapshots:
        raise ValueError("no snapshots taken")
    before = [s for s in snapshots if s.at <= first]
    after = [s for s in snapshots if s.at >= last]
    return (before[-1] if before else snapshots[0], after[0] if after else snapshots[-1])
