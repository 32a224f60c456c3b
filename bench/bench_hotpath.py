"""Benchmark: the reader's per-event CPU without I/O, compiled (mypyc) against its sources.

    .venv/bin/python bench/bench_hotpath.py             # 100,000 single-row transactions
    .venv/bin/python bench/bench_hotpath.py --events 20000 --no-doc

What runs: the frames of N single-row transactions, captured once from a real slot
(binary pgoutput, the reader's default), replayed in memory through the reader's own
path: ``FrameLoop`` (Begin / Insert / Commit) -> ``ValueEncoder`` (the Kafka key and
value) -> ``PartitionBatcher.add`` into aiokafka's real record-batch builder -> the
batches' acknowledgements folded into the ``FlushTracker``, 50,000 events in flight at
most, as in the reader. No socket, no broker: what is left is the work the reader does
per event, the part this code controls.

Each mode runs in its own process: the compiled modules (``scripts/build_native.py``),
then the same modules from their sources (``PIPELINE_NATIVE=0``), the baseline of the
same run. The figure is the process CPU time per event, best of ``--rounds``, which
moves less with other load than wall-clock time. ``bench/bench_reader.py`` measures the
whole drain (PostgreSQL -> Kafka); this one isolates the part a change to
``replication/`` moves. The services must run (``pipeline dev up``) for the capture.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pickle
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make the project importable
    sys.path.insert(0, str(REPO))

RESULTS = REPO / "bench" / "results"
DOC = REPO / "docs" / "benchmarks.md"
SECTION = "## Reader hot path: per-event CPU without I/O"
# What follows this line in the section is written by hand (comparisons across commits)
# and kept when the figures above it are rewritten.
NOTES = "<!-- hand-written below: kept when bench/bench_hotpath.py rewrites the figures above -->"
MAX_IN_FLIGHT = 50_000
INSERT = 0x49


def capture(events: int, path: Path) -> None:
    """Write ``events`` single-row transactions in a fresh database and keep the frames
    its slot sends (binary pgoutput) in ``path``."""
    import psycopg

    from bench.reader_backlog import admin_dsn, settle, write_backlog
    from pipeline.dev.layout import load_layout
    from pipeline.migrate import migrate
    from replication.frame_loop import payload_tag
    from replication.wire import ReplicationWire

    layout = load_layout()
    name = f"bench_hot_{uuid.uuid4().hex[:8]}"
    admin = admin_dsn(layout)
    dsn = f"postgresql://postgres@{layout.host}:{layout.pg_port}/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        migrate(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (name,))
        write_backlog(dsn, events, 2, 1)
        settle(dsn)

        async def read() -> list[bytes]:
            conn = await psycopg.AsyncConnection.connect(
                dsn, autocommit=True, replication="database"
            )
            try:
                wire = ReplicationWire(conn)
                await wire.start_copy(
                    f"START_REPLICATION SLOT {name} LOGICAL 0/0 (proto_version '1', "
                    "publication_names 'pipeline_domain_events', binary 'true')"
                )
                frames: list[bytes] = []
                inserts = 0
                while inserts < events:
                    for frame in await wire.read_batch(timeout=10):
                        if frame[0] == 0x77:  # XLogData; keepalives are not the reader's work
                            frames.append(frame)
                            inserts += payload_tag(frame) == INSERT
                return frames
            finally:
                await conn.close()

        frames = asyncio.run(read())
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_drop_replication_slot(%s)", (name,))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    path.write_bytes(pickle.dumps(frames))


def replay(path: Path, rounds: int) -> dict[str, object]:
    """CPU µs per event of the in-memory path over the captured frames (best round)."""
    import gc

    from aiokafka.producer.message_accumulator import BatchBuilder

    from replication import native
    from replication.batcher import PartitionBatcher, RecordBatch
    from replication.decoder import decode_pgoutput, parse_copy_data
    from replication.frame_loop import FrameLoop, payload_tag
    from replication.lsn import LSN, Position
    from replication.messages import Relation, XLogData
    from replication.rows import RelationCache
    from replication.tracker import FlushTracker
    from replication.value_encoder import ValueEncoder

    frames: list[bytes] = pickle.loads(path.read_bytes())
    events = sum(1 for f in frames if payload_tag(f) == INSERT)
    relations = RelationCache()
    for frame in frames:
        if payload_tag(frame) == 0x52:  # 'R'
            data = parse_copy_data(frame)
            assert isinstance(data, XLogData)
            message = decode_pgoutput(data.payload)
            assert isinstance(message, Relation)
            relations.add(message)
    encoder = ValueEncoder(relations)

    class Producer:  # what the batcher uses of AIOKafkaProducer; batches are never sent
        def create_batch(self) -> RecordBatch:
            return BatchBuilder(1024 * 1024, 0)  # type: ignore[no-any-return]

        async def send_batch(
            self, batch: RecordBatch, topic: str, *, partition: int
        ) -> asyncio.Future[object]:
            raise AssertionError("not sent in this benchmark")

    def one_round() -> float:
        tracker = FlushTracker(LSN.ZERO)

        def on_acks(positions: list[Position], error: BaseException | None) -> None:
            loop.in_flight -= len(positions)
            tracker.ack_streamed(positions)

        batcher = PartitionBatcher(Producer(), "t", 8, on_acks, max_message_bytes=16 << 20)
        loop = FrameLoop(encoder.encode, batcher.add, tracker, MAX_IN_FLIGHT)

        def ack_everything() -> None:  # Kafka answers for every batch handed over
            for lane in batcher._lanes:
                while (taken := lane.take()) is not None:
                    on_acks(taken[1], None)

        started = _cpu()
        i, n = 0, len(frames)
        while i < n:
            i = loop.run(frames, i)
            if i < n:
                if loop.in_flight >= loop.max_in_flight:
                    ack_everything()
                else:
                    i += 1  # not Begin/Insert/Commit (Relation, ...): the session's
        ack_everything()
        tracker.flushable()
        assert loop.events == events and loop.in_flight == 0
        return _cpu() - started

    gc.collect()
    gc.freeze()  # as the reader does before its stream
    best = min(one_round() for _ in range(rounds))
    compiled = not native.stale() and bool(native.built()) and os.environ.get(native.ENV) != "0"
    return {"events": events, "us_per_event": best / events * 1e6, "compiled": compiled}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _replay_in_subprocess(path: Path, rounds: int, native_env: str) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, __file__, "--replay", str(path), "--rounds", str(rounds)],
        env={**os.environ, "PIPELINE_NATIVE": native_env},
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"replay failed ({native_env=}):\n{proc.stderr[-3000:]}")
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def write_doc(result: dict[str, object]) -> None:
    """Replace (or add) this benchmark's section of docs/benchmarks.md."""
    compiled, source = result["compiled"], result["source"]
    assert isinstance(compiled, dict) and isinstance(source, dict)
    section = f"""{SECTION}

Written by `bench/bench_hotpath.py` (run {result["date"]}; JSON in `bench/results/`).
The frames of **{result["events"]:,}** single-row transactions, captured from a real
slot (binary pgoutput), replayed in memory through the reader's path: `FrameLoop` ->
`ValueEncoder` -> `PartitionBatcher.add` (aiokafka's record-batch builder) -> acks into
the `FlushTracker`. No socket and no broker: the CPU the reader's own code spends per
event. Process CPU time, best of {result["rounds"]} rounds, one process per mode.

| modules | CPU µs per event | events/s on one core |
| --- | ---: | ---: |
| compiled (mypyc, `scripts/build_native.py`) | {compiled["us_per_event"]:.1f} | {1e6 / float(compiled["us_per_event"]):,.0f} |
| the same sources (`PIPELINE_NATIVE=0`) | {source["us_per_event"]:.1f} | {1e6 / float(source["us_per_event"]):,.0f} |

Compiled / sources: **{result["speedup"]:.2f}x** faster. The whole drain (reading the
socket, aiokafka's requests, the event loop) costs the reader about twice this per
event; see the drain section above.
"""
    from bench.report import write_section

    text = DOC.read_text() if DOC.exists() else ""
    start = text.find(SECTION)
    if start != -1:
        end = text.find("\n## ", start + len(SECTION))
        current = text[start : end if end != -1 else len(text)]
        if NOTES in current:
            section += "\n" + current[current.index(NOTES) :].rstrip("\n") + "\n"
    write_section(DOC, SECTION, section)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the reader's per-event CPU without I/O")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")
    parser.add_argument("--replay", type=Path, help=argparse.SUPPRESS)  # one mode's process
    args = parser.parse_args(argv)
    if args.replay is not None:
        print(json.dumps(replay(args.replay, args.rounds)))
        return 0

    RESULTS.mkdir(parents=True, exist_ok=True)
    frames = RESULTS / f"hotpath-frames-{args.events}.pickle"
    if not frames.exists():
        print(f"capturing {args.events:,} single-row transactions from a real slot", flush=True)
        capture(args.events, frames)
    compiled = _replay_in_subprocess(frames, args.rounds, "1")
    if not compiled["compiled"]:
        raise SystemExit("the compiled modules are not built: run scripts/build_native.py")
    source = _replay_in_subprocess(frames, args.rounds, "0")
    speedup = float(source["us_per_event"]) / float(compiled["us_per_event"])  # type: ignore[arg-type]
    result: dict[str, object] = {
        "benchmark": "reader_hotpath",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": " ".join(["python bench/bench_hotpath.py", *(argv or sys.argv[1:])]),
        "events": compiled["events"],
        "rounds": args.rounds,
        "compiled": compiled,
        "source": source,
        "speedup": speedup,
    }
    out = RESULTS / f"hotpath-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(
        f"compiled {compiled['us_per_event']:.1f} µs/event, sources "
        f"{source['us_per_event']:.1f} µs/event: {speedup:.2f}x -> {out}"
    )
    if not args.no_doc:
        write_doc(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
