"""How much a SIGKILL of `pipeline run` makes the agents handle twice, and how fast the
chain moves again after it (issue 14, "steady state again <= 5 s").

    .venv/bin/python -m bench.chaos_redelivery --rate 3 --seconds 90 --kills 3

The set-up of a chaos run (its own database, slot, topic, group and task queue; the real
`pipeline worker`; one `pipeline run` replica with `PIPELINE_INSTANCE_ID`), bootstraps
emitted at a steady rate with plain SQL, and from outside only:

- every 0.5 s, per partition, how far the group's committed offset is behind the end of
  the partition (an aiokafka admin client and a plain consumer): what a SIGKILL at that
  moment would deliver again, less what the process had not read yet;
- at each kill, that same figure just before the SIGKILL;
- from the restart (at once) to the first log line of the new process, and to the next
  ``workflow.queue.pending`` committed (``domain_events.created_at``).

Prints one table; environment variables given with ``--env NAME=VALUE`` reach the
replica (``BROKER_COMMIT_INTERVAL`` is Faust's own setting).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench.chaos import _cluster, _create_database, _drop_database, _slot_active, _wait
from bench.chaos_drive import emit_all
from bench.chaos_plan import Emission
from pipeline import events as ev
from pipeline.dev import services
from pipeline.dev.layout import load_layout

SAMPLE_EVERY = 0.5


@dataclass
class Lag:
    """Committed-offset lag samples (records behind the end, summed over partitions)."""

    samples: list[int] = field(default_factory=list)
    per_partition_max: int = 0


async def committed_offsets(
    admin: AIOKafkaAdminClient, group: str, tps: list[TopicPartition]
) -> list[int]:
    committed = await admin.list_consumer_group_offsets(group, partitions=tps)
    out = []
    for tp in tps:
        meta = committed.get(tp)
        out.append(meta.offset if meta is not None and meta.offset >= 0 else 0)
    return out


async def committed_lag(
    admin: AIOKafkaAdminClient, consumer: AIOKafkaConsumer, group: str, tps: list[TopicPartition]
) -> list[int]:
    ends = await consumer.end_offsets(tps)
    done = await committed_offsets(admin, group, tps)
    return [max(ends[tp] - d, 0) for tp, d in zip(tps, done, strict=True)]


def redelivered(lines: list[str], committed: list[int]) -> int:
    """Records between the committed offset and the last one the killed process logged
    handling, per partition: what the restarted process is given again."""
    last: dict[int, int] = {}
    for at in handled(lines):
        p, offset = at.rsplit("[", 1)[1].split("]@")
        last[int(p)] = max(last.get(int(p), -1), int(offset))
    return sum(max(0, last.get(p, -1) + 1 - c) for p, c in enumerate(committed))


def first_pending_after(dsn: str, wall: float) -> float | None:
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT extract(epoch FROM min(created_at)) FROM domain_events "
            "WHERE event_type = %s AND created_at > to_timestamp(%s)",
            (ev.QUEUE_PENDING, wall),
        ).fetchone()
    return float(row[0]) if row and row[0] is not None else None


def _log_time(line: str) -> float | None:
    """Wall time of a log line: ours (``2026-...``) or Faust's (``[2026-...]``), UTC."""
    text = line[1:] if line.startswith("[") else line
    try:
        t = datetime.strptime(text[:23], "%Y-%m-%d %H:%M:%S,%f")
    except ValueError:
        return None
    return t.replace(tzinfo=UTC).timestamp()


def segments(path: str) -> list[list[str]]:
    """The log's lines per process start (the harness writes a marker before each)."""
    out: list[list[str]] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("==== chaos: start at"):
                out.append([])
            elif out:
                out[-1].append(line)
    return out


def handled(lines: list[str]) -> set[str]:
    """``topic[p]@offset`` of every record a process logged handling (any agent)."""
    out = set()
    for line in lines:
        match = _HANDLED.search(line)
        if match:
            out.add(match["at"])
    return out


_HANDLED = re.compile(r"(?P<at>\S+\[\d+\]@\d+)\s*$")


def first_line_time(lines: list[str]) -> float | None:
    for line in lines:
        t = _log_time(line)
        if t is not None:
            return t
    return None


async def main(args: argparse.Namespace) -> int:
    layout = load_layout()
    started = await asyncio.to_thread(services.up, layout)
    nonce = uuid.uuid4().hex[:8]
    db = f"chaos_{nonce}"
    dsn = await asyncio.to_thread(_create_database, layout, db)
    cluster = _cluster(layout, dsn, nonce, 1, args.partitions)
    extra = dict(kv.split("=", 1) for kv in args.env)
    run = cluster.runs[0]
    run.env.update(extra)
    topic, group = f"chaos-{nonce}", f"chaos-{nonce}"
    tps = [TopicPartition(topic, p) for p in range(args.partitions)]
    admin = AIOKafkaAdminClient(bootstrap_servers=layout.kafka_bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=layout.kafka_bootstrap)
    lag = Lag()
    kills: list[dict[str, Any]] = []
    try:
        cluster.worker.start()
        run.start()
        await _wait(lambda: _slot_active(dsn, f"chaos_{nonce}"), "the reader", 180)
        await admin.start()
        await consumer.start()
        n = int(args.rate * args.seconds)
        emissions = tuple(Emission(k, k / args.rate, "stream", 1) for k in range(n))
        loop = asyncio.get_running_loop()
        t0 = loop.time() + 1.0
        emitting = asyncio.create_task(emit_all(dsn, emissions, t0))
        kill_at = [args.seconds * (i + 1) / (args.kills + 1) for i in range(args.kills)]
        steady_from = min(10.0, args.seconds * 0.15)
        while not emitting.done():
            now = loop.time() - t0
            if kill_at and now >= kill_at[0]:
                kill_at.pop(0)
                behind = await committed_lag(admin, consumer, group, tps)
                await run.kill()
                at_kill = await committed_offsets(admin, group, tps)
                restart = time.time()
                run.start()
                kills.append(
                    {
                        "behind": float(sum(behind)),
                        "max_p": float(max(behind)),
                        "restart": restart,
                        "committed": at_kill,
                    }
                )
                steady_from = now + 20.0  # a restarted replica's backlog is not steady state
            elif now > steady_from:
                sample = await committed_lag(admin, consumer, group, tps)
                lag.samples.append(sum(sample))
                lag.per_partition_max = max(lag.per_partition_max, *sample)
            await asyncio.sleep(SAMPLE_EVERY)
        await emitting
        await asyncio.sleep(5)
        parts = segments(str(run.log_file))
        for i, k in enumerate(kills):
            restart = float(k["restart"] or 0)
            before, after = parts[i], parts[i + 1]
            k["first_log"] = first_line_time(after)
            k["pending"] = await asyncio.to_thread(first_pending_after, dsn, restart)
            # A record the killed process logged handling and the new one handled again.
            k["again"] = float(len(handled(before) & handled(after)))
            k["redelivered"] = float(redelivered(before, k["committed"]))
    finally:
        await consumer.stop()
        await admin.close()
        for m in cluster.managed():
            await m.stop(60)
        await asyncio.to_thread(_drop_database, layout, db)
        if started:
            await asyncio.to_thread(services.down, layout, started)
    print(f"redelivery probe: rate {args.rate}/s, {args.partitions} partitions, env {extra}")
    if lag.samples:
        print(
            f"committed lag (records, all partitions) in steady state: n={len(lag.samples)} "
            f"median {statistics.median(lag.samples):.0f} max {max(lag.samples)}; "
            f"max on one partition {lag.per_partition_max}"
        )
    for i, k in enumerate(kills):
        r = float(k["restart"] or 0)
        fl = k["first_log"]
        pe = k["pending"]
        print(
            f"kill {i}: behind the committed offsets at the kill {k['behind']:.0f} "
            f"(max {k['max_p']:.0f} on one partition); restart -> first log line "
            f"{(fl - r) if fl else float('nan'):.1f} s; restart -> next pending "
            f"{(pe - r) if pe else float('nan'):.1f} s; redelivered (committed offset .. last "
            f"offset the killed process logged) {k['redelivered']:.0f}; "
            f"records the new process logged handling again {k['again']:.0f}"
        )
    print(f"load average {os.getloadavg()}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.chaos_redelivery")
    p.add_argument("--rate", type=float, default=3.0)
    p.add_argument("--seconds", type=float, default=90.0)
    p.add_argument("--kills", type=int, default=3)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--env", action="append", default=[], help="NAME=VALUE for the replica")
    return p


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parser().parse_args())))
