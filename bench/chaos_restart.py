"""How long `pipeline run` takes to come back after a SIGKILL, piece by piece (issue 14).

    .venv/bin/python -m bench.chaos_restart --kills 5 --rate 2

Brings up this checkout's services (``pipeline dev``), a database, topic, group and task
queue of its own (as bench/chaos.py does), ``pipeline worker`` and one ``pipeline run``
(``PIPELINE_INSTANCE_ID`` set, as in the StatefulSet). While bootstraps are emitted with
plain SQL at a steady rate it SIGKILLs the replica ``--kills`` times, restarts it at once
and times, from the outside, each step from the restart:

- ``log``: the new process's first log line (Python's imports, mostly);
- ``app``: its ``pipeline app:`` line (the Faust app built, the topics there);
- ``web``: ``/metrics`` answering (the Faust worker started);
- ``reader``: ``pipeline_reader_active 1`` on ``/metrics`` (the slot streamed again);
- ``consumed``: ``pipeline_events_consumed_total`` above 0 (a record reached an agent);
- ``cpu``: the CPU seconds the new process had used by the next pending (on a shared
  machine the wall times follow the load; this does not);
- ``pending``: the next ``workflow.queue.pending`` committed (the chaos harness's recovery
  figure for ``run_kill``), and ``started`` the next ``workflow_started``.

Measuring only: nothing is judged; it prints one row per kill and the medians, with the
load averages before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import statistics
import time
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path

import psycopg
from psycopg.rows import TupleRow

from bench import chaos
from bench.chaos_drive import emit_all
from bench.chaos_plan import Emission
from pipeline import events as ev
from pipeline.dev import services
from pipeline.dev.layout import load_layout

log = logging.getLogger("chaos_restart")
STEPS = ("log", "app", "web", "reader", "consumed", "pending", "started")
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")
_MARK = "==== chaos: start at "


def _metrics(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as response:
            return str(response.read().decode())
    except OSError:
        return None


def _consumed(page: str) -> float:
    total = 0.0
    for line in page.splitlines():
        if line.startswith("pipeline_events_consumed_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _log_times(log_file: Path, restart: float) -> dict[str, float]:
    """The first log line and the ``pipeline app:`` line after the restart's marker."""
    found: dict[str, float] = {}
    lines = log_file.read_text(errors="replace").splitlines()
    marks = [i for i, line in enumerate(lines) if line.startswith(_MARK)]
    if not marks:
        return found
    for line in lines[marks[-1] + 1 :]:
        m = _STAMP.match(line)
        if m is None:
            continue
        at = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp() - restart
        found.setdefault("log", at)
        if "pipeline app:" in line:
            found.setdefault("app", at)
    return found


def _first_after(
    conn: psycopg.Connection[TupleRow], event_type: str, moment: float
) -> float | None:
    row = conn.execute(
        "SELECT min(extract(epoch FROM created_at))::float8 FROM domain_events "
        "WHERE event_type = %s AND created_at > to_timestamp(%s)",
        (event_type, moment),
    ).fetchone()
    return None if row is None or row[0] is None else float(row[0]) - moment


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds the process has used (from /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _watch(port: int, pid: int, dsn: str, restart: float, until: float) -> dict[str, float]:
    """Poll the new process's /metrics and the event store until the next pending.

    Each step's time from the restart, and ``cpu@<step>``: the CPU seconds the process
    had used by then.
    """
    seen: dict[str, float] = {}

    def mark(step: str, at: float) -> None:
        if step not in seen:
            seen[step] = at
            cpu = _cpu_seconds(pid)
            if cpu is not None:
                seen[f"cpu@{step}"] = cpu

    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.time() < until and "pending" not in seen:
            page = _metrics(port)
            now = time.time() - restart
            if page is not None:
                mark("web", now)
                if "pipeline_reader_active 1.0" in page:
                    mark("reader", now)
                if _consumed(page) > 0:
                    mark("consumed", now)
            at = _first_after(conn, ev.QUEUE_PENDING, restart)
            if at is not None:
                mark("pending", at)
            time.sleep(0.1)
        at = _first_after(conn, ev.BOOTSTRAP_WORKFLOW_STARTED, restart)
        if at is not None:
            seen["started"] = at
    return seen


def _loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


async def measure(args: argparse.Namespace) -> list[dict[str, float]]:
    layout = load_layout()
    started = await asyncio.to_thread(services.up, layout)
    nonce = uuid.uuid4().hex[:8]
    db = f"chaos_{nonce}"
    dsn = await asyncio.to_thread(chaos._create_database, layout, db)
    cluster = chaos._cluster(layout, dsn, nonce, 1, args.partitions)
    run = cluster.runs[0]
    if args.code:  # another checkout's `pipeline run` (a before/after comparison)
        run.env["PYTHONPATH"] = args.code
    rows: list[dict[str, float]] = []
    emitting: asyncio.Task[object] | None = None
    try:
        if args.worker:
            cluster.worker.start()
        run.start()
        await chaos._wait(lambda: chaos._slot_active(dsn, f"chaos_{nonce}"), "the reader", 180)
        loop = asyncio.get_running_loop()
        seconds = args.warmup + args.kills * (args.every + 60) + 30  # cancelled at the end
        count = int(seconds * args.rate)
        emissions = tuple(
            Emission(k, k / args.rate, ("stream", "aggregate")[k % 2], 1) for k in range(count)
        )
        emitting = asyncio.create_task(emit_all(dsn, emissions, loop.time() + 0.5))
        await asyncio.sleep(args.warmup)
        for k in range(args.kills):
            load = _loadavg()
            await run.kill()
            await asyncio.sleep(args.hold)
            restart = time.time()
            run.start()
            assert run.proc is not None
            seen = await asyncio.to_thread(
                _watch, run.web_port(), run.proc.pid, dsn, restart, restart + 120
            )
            await asyncio.sleep(args.every)
            row = {**_log_times(run.log_file, restart), **seen}
            rows.append(row)
            print(
                f"kill {k + 1}: "
                + "  ".join(f"{s} {row[s]:5.1f}" if s in row else f"{s}   -  " for s in STEPS)
                + f"  cpu {row.get('cpu@pending', float('nan')):.2f} s  (load {load})",
                flush=True,
            )
    finally:
        if emitting is not None:
            emitting.cancel()
        await chaos._clean_up(cluster, layout, db, nonce, keep=False, started=started)
    return rows


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.chaos_restart", description=__doc__)
    p.add_argument("--kills", type=int, default=5)
    p.add_argument("--rate", type=float, default=2.0, help="bootstraps per second")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--hold", type=float, default=0.0, help="seconds between kill and restart")
    p.add_argument("--every", type=float, default=8.0, help="seconds of load after a recovery")
    p.add_argument("--warmup", type=float, default=10.0)
    p.add_argument("--no-worker", dest="worker", action="store_false")
    p.add_argument("--code", default=None, help="PYTHONPATH of `pipeline run` (another checkout)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    print(f"load average before: {_loadavg()}", flush=True)
    rows = asyncio.run(measure(args))
    print(f"load average after: {_loadavg()}")
    for step in (*STEPS, "cpu@consumed", "cpu@pending"):
        values = [r[step] for r in rows if step in r]
        if values:
            print(
                f"{step:9} median {statistics.median(values):5.1f} s  max {max(values):5.1f} s"
                f"  (n={len(values)})"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
