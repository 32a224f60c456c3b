"""The reader benchmark's report: the machine the figures were measured on, py-spy's
profile summed per function, and the "Reader: WAL -> Kafka drain" section of
docs/benchmarks.md (``bench/bench_reader.py``)."""

from __future__ import annotations

import collections
import os
import platform
import re
from pathlib import Path

import psycopg

from bench.reader_backlog import admin_dsn
from bench.reader_drains import recvlogical_options
from bench.report import write_section
from pipeline.dev.layout import KAFKA_VERSION, DevLayout

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
SECTION = "## Reader: WAL -> Kafka drain"


def machine_info(layout: DevLayout) -> dict[str, str]:
    """What the figures were measured on."""
    with psycopg.connect(admin_dsn(layout)) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    pg_version = str(row[0]) if row else "?"
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "memory_gib": f"{mem_kb / 1024 / 1024:.1f}",
        "postgresql": pg_version,
        "kafka": KAFKA_VERSION,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def summarize_profile(path: Path, top: int = 25) -> list[tuple[str, float]]:
    """Share of samples per function (inclusive), from py-spy's collapsed stacks."""
    totals: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        samples += n
        seen = set()
        for frame in stack.split(";"):
            name = re.sub(r":\d+\)$", ")", frame)  # one entry per function, not per line
            if name not in seen:
                seen.add(name)
                totals[name] += n
    return [(name, 100 * n / samples) for name, n in totals.most_common(top)] if samples else []


def write_doc(result: dict[str, object]) -> None:
    """Replace (or add) this benchmark's section of docs/benchmarks.md."""
    ours = result["ours"]
    recv = result["pg_recvlogical"]
    info = result["machine"]
    assert isinstance(ours, dict) and isinstance(recv, dict) and isinstance(info, dict)
    cpu_us = float(ours["cpu_seconds"]) / int(result["events"]) * 1e6  # type: ignore[call-overload]
    binary = bool(result.get("binary", False))
    mode = "binary" if binary else "text"
    compiled = (
        "compiled with mypyc (`scripts/build_native.py`)"
        if result.get("native")
        else "pure Python (not compiled)"
    )
    load = result.get("load_average")
    load_text = (
        f" The 1-minute load average was {load[0]:.1f} when the drains started and "  # type: ignore[index]
        f"{load[1]:.1f} when they ended."  # type: ignore[index]
        if load
        else ""
    )
    recv_options = " ".join(recvlogical_options(binary))
    section = f"""{SECTION}

Written by `bench/bench_reader.py` (the last run; its JSON is in `bench/results/`, git-ignored).
A backlog of **{result["events"]:,}** single-row transactions (one `domain_events` row each,
{result["partitions"]} partitions) is written after two pgoutput slots were created at the same
point; then each consumer drains the identical backlog, both in pgoutput's **{mode}** mode
(columns in {"their types' binary send formats, `binary 'true'`" if binary else "text output"}).
*Ours*: the `pipeline reader` process, from start until Kafka (acks=all, idempotent
producer) holds every event and the slot's confirmed_flush_lsn is past the last commit.
*pg_recvlogical*: `pg_recvlogical --start --plugin=pgoutput {recv_options}
--endpos=<end of backlog> -F 0 -f /dev/null`: PostgreSQL's own C client receiving the
same decoded WAL and throwing it away. It is the reference, not a ceiling: the
walsender (the server process that decodes the WAL and sends it) shares the machine's
CPUs with the consumer, and how much it spends per event depends on how the consumer
reads (the walsender column below). After the backlog is written the database is
settled (`VACUUM (ANALYZE)`, `CHECKPOINT`) so that neither drain shares the machine
with autovacuum or a checkpoint.

Command: `{result["command"]}` (run {result["date"]})

| consumer | seconds | events/s | peak RSS (MiB) | CPU seconds | walsender CPU seconds |
| --- | ---: | ---: | ---: | ---: | ---: |
| ours (`pipeline reader` -> Kafka) | {ours["seconds"]:.1f} | {ours["events_per_second"]:,.0f} | {ours["peak_rss_mib"]:.0f} | {ours["cpu_seconds"]:.1f} | {ours.get("walsender_cpu_seconds", 0.0):.1f} |
| pg_recvlogical -> /dev/null | {recv["seconds"]:.1f} | {recv["events_per_second"]:,.0f} | {recv["peak_rss_mib"]:.0f} | {recv["cpu_seconds"]:.1f} | {recv.get("walsender_cpu_seconds", 0.0):.1f} |

Ratio ours / pg_recvlogical: **{result["ratio"]:.2f}x** (target >= 0.25x and >= 25,000 events/s).
All events were in Kafka after {result["ours_acked_seconds"]:.1f} s; the rest is the
wait for the next status update to confirm them. Writing the backlog took {result["fill_seconds"]:.0f} s.

Machine: {info["nproc"]} CPUs ({info["cpu"]}), {info["memory_gib"]} GiB RAM; PostgreSQL {info["postgresql"]},
Kafka {info["kafka"]} (KRaft, one broker), Python {info["python"]}, Linux {info["kernel"]}.
PostgreSQL, Kafka, the reader and pg_recvlogical share the machine, as in the tests, so
wall-clock figures move with whatever else runs; the reader's CPU seconds per event are
the steadier measure ({cpu_us:.0f} µs here).{load_text} The reader's hot modules were
{compiled}.
"""
    section += """
How the reader keeps up (details in `replication/`): the hot modules are compiled; while
the reader is behind, Kafka batches are held back until they hold 1,000 events, are
50 ms old, or the reader has read everything the server sent (`replication/batcher.py`),
so a backlog goes out in batches of hundreds of events instead of one round trip's
worth, and the broker handles fewer, larger requests. The walsender column is why the
ratio can pass 1: serving pg_recvlogical, which reads every message the moment it is
sent, the walsender spends more CPU per event (most likely one send and one wake-up per
message) than serving our reader, which reads the socket when it holds many; on two
CPUs that difference is throughput.
"""
    if result.get("profile"):
        lines = "\n".join(f"| `{name}` | {share:.0f}% |" for name, share in result["profile"])  # type: ignore[attr-defined]
        section += f"""
Where the reader's time goes (py-spy, `--profile`, inclusive share of samples):

| function | share |
| --- | ---: |
{lines}
"""
    write_section(DOC, SECTION, section)
