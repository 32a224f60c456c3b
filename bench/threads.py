"""Where one process's time went, thread by thread: on a core, or waiting for one.

``pipeline run`` drained at 0.64-0.71 of a core on a two-core machine that was not full
(bench/cpu_share.py's table). A process's CPU share cannot say whether it waited for its
database, for the GIL or for a core. The kernel's scheduler statistics can: for every
thread, ``/proc/<pid>/task/<tid>/schedstat`` holds the nanoseconds it ran on a core and
the nanoseconds it was runnable but waited on a run queue for one. A thread whose two add
up to nearly all of the wall time is bound by the CPU it gets; one with time left over
waited for something else (I/O, a lock, the GIL: those sleep).

The pure half (:func:`parse_schedstat`, :func:`usage_between`) is unit-tested;
:class:`ThreadSampler` reads ``/proc``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

PERIOD_S = 0.25


@dataclass(frozen=True, slots=True)
class ThreadTimes:
    """Seconds one thread ran on a core and waited runnable for one, so far."""

    on_core: float
    waiting: float


@dataclass(frozen=True, slots=True)
class TaskSnapshot:
    at: float  # time.time()
    threads: Mapping[int, ThreadTimes]  # tid -> its times so far


@dataclass(frozen=True, slots=True)
class ThreadUsage:
    """Over a window, in cores (seconds per wall second): the busiest thread on a core and
    waiting for one, and every other thread of the process on a core together."""

    busiest_on_core: float
    busiest_waiting: float
    others_on_core: float

    @property
    def busiest_wanted(self) -> float:
        """The share of the window the busiest thread ran or could have run."""
        return self.busiest_on_core + self.busiest_waiting


def parse_schedstat(text: str) -> ThreadTimes:
    """:class:`ThreadTimes` from a ``schedstat`` file ("<ns on cpu> <ns waiting> <slices>")."""
    fields = text.split()
    if len(fields) < 2:
        raise ValueError(f"not a schedstat line: {text!r}")
    return ThreadTimes(int(fields[0]) / 1e9, int(fields[1]) / 1e9)


def usage_between(start: TaskSnapshot, end: TaskSnapshot) -> ThreadUsage | None:
    """:class:`ThreadUsage` from ``start`` to ``end``; None without a span or threads.

    A thread missing from ``start`` started in between: all of its time counts; one missing
    from ``end`` ended: it is left out (its times left ``/proc`` with it).
    """
    span = end.at - start.at
    if span <= 0 or not end.threads:
        return None
    zero = ThreadTimes(0.0, 0.0)
    deltas = []
    for tid, now in end.threads.items():
        before = start.threads.get(tid, zero)
        deltas.append((now.on_core - before.on_core, now.waiting - before.waiting))
    deltas.sort(reverse=True)
    (on_core, waiting), rest = deltas[0], deltas[1:]
    return ThreadUsage(on_core / span, waiting / span, sum(d[0] for d in rest) / span)


def read_tasks(pid: int, proc: Path = Path("/proc")) -> TaskSnapshot | None:
    """The times of every thread of ``pid`` now; None once it is gone or without
    scheduler statistics."""
    at = time.time()
    threads: dict[int, ThreadTimes] = {}
    try:
        entries = list(os.scandir(proc / str(pid) / "task"))
    except OSError:
        return None
    for entry in entries:
        try:
            threads[int(entry.name)] = parse_schedstat(Path(entry.path, "schedstat").read_text())
        except (OSError, ValueError):
            continue
    return TaskSnapshot(at, threads) if threads else None


@dataclass
class ThreadSampler:
    """Samples :func:`read_tasks` of ``pid`` every ``period`` seconds in a thread, until
    :meth:`stop` or the process is gone."""

    pid: int
    period: float = PERIOD_S
    snapshots: list[TaskSnapshot] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> ThreadSampler:
        self._thread = threading.Thread(target=self._run, name="thread-times", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while True:
            snap = read_tasks(self.pid)
            if snap is not None:
                self.snapshots.append(snap)
            if self._stop.wait(self.period):
                return

    def usage(self, first: float, last: float) -> ThreadUsage | None:
        """:class:`ThreadUsage` between the first snapshot at or after ``first`` and the
        last at or before ``last``; None with fewer than two inside."""
        inside = [s for s in self.snapshots if first <= s.at <= last]
        if len(inside) < 2:
            return None
        return usage_between(inside[0], inside[-1])
