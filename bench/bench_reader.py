"""Benchmark: drain a WAL backlog into Kafka with our reader, against pg_recvlogical.

    .venv/bin/python bench/bench_reader.py            # 1,000,000 single-row transactions
    .venv/bin/python bench/bench_reader.py --quick    # 100,000
    .venv/bin/python bench/bench_reader.py --events 250000 --profile
    .venv/bin/python bench/bench_reader.py --quick --rows-per-transaction 100 --no-doc

A fresh, migrated database gets two pgoutput slots created one after the other, with
nothing written to the database in between, so both start at the same point; then the
backlog is written (N single-row transactions, each a ``domain_events`` row, committed
one by one by a server-side procedure in parallel sessions; ``--rows-per-transaction``
groups them). Both consumers then drain
the identical backlog:

(a) ``pipeline reader`` as a subprocess (the real process, configured by env), timed
    from its start until Kafka holds all N events *and* the slot's confirmed_flush_lsn
    is past the last commit (everything durable, invariant 2);
(b) ``pg_recvlogical --start`` with the same plugin, publication and column format into
    /dev/null, timed from its start until it exits at ``--endpos`` (the WAL position
    after the backlog): PostgreSQL's own client receiving the same WAL, with no Kafka.
    It is the reference the ratio is taken against, not an upper bound: the walsender
    shares the CPUs, and spends more per event on a client that reads each message as it
    is sent (its CPU time is sampled from /proc for both drains).

Both use pgoutput's binary mode (``binary 'true'``: columns in their types' send
formats, which costs the walsender less CPU than text output) when the server supports
it (PostgreSQL 14+), as the reader does by default; ``--text`` compares text mode
(``PIPELINE_PGOUTPUT_BINARY=false`` for the reader). The mode is in the results.

Peak RSS is the process's VmHWM (ru_maxrss). Results go to bench/results/ as JSON
(git-ignored) and, as a table, to the "Reader: WAL -> Kafka drain" section of
docs/benchmarks.md (other sections of that file are left alone). ``--profile`` samples
the reader with py-spy (``pip install py-spy``) and writes collapsed stacks next to the
JSON, with a summary of the hottest functions printed.

The services must run (``pipeline dev up``); the benchmark uses the same local layout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make the project importable
    sys.path.insert(0, str(REPO))

from bench.reader_backlog import admin_dsn, confirmed_flush, settle, write_backlog  # noqa: E402
from bench.reader_drains import RESULTS, delete_topic, drain_ours, drain_pg_recvlogical  # noqa: E402
from bench.reader_report import machine_info, summarize_profile, write_doc  # noqa: E402
from pipeline.dev.layout import load_layout  # noqa: E402
from pipeline.migrate import migrate  # noqa: E402
from replication import native  # noqa: E402
from replication.session import BINARY_MIN_SERVER_VERSION  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print and record the figures."""
    parser = argparse.ArgumentParser(description="reader drain vs pg_recvlogical")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="100,000 events")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--fill-sessions", type=int, default=2)
    parser.add_argument(
        "--rows-per-transaction",
        type=int,
        default=1,
        help="events per transaction of the backlog (default 1: the worst case)",
    )
    parser.add_argument(
        "--text",
        action="store_true",
        help="pgoutput text mode for both consumers (default: binary where the server has it)",
    )
    parser.add_argument("--profile", action="store_true", help="sample the reader with py-spy")
    parser.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")
    parser.add_argument(
        "--doc-from", type=Path, help="only rewrite the docs section from a saved result JSON"
    )
    args = parser.parse_args(argv)
    if args.doc_from is not None:
        write_doc(json.loads(args.doc_from.read_text()))
        return 0
    events = 100_000 if args.quick else args.events
    if args.profile and shutil.which("py-spy", path=str(Path(sys.executable).parent)) is None:
        parser.error("--profile needs py-spy in the virtualenv: pip install py-spy")
    layout = load_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex[:8]
    dbname = f"bench_reader_{run_id}"
    dsn = f"postgresql://postgres@{layout.host}:{layout.pg_port}/{dbname}"
    ours_slot, recv_slot = f"bench_ours_{run_id}", f"bench_recv_{run_id}"
    topic = f"bench-reader-{run_id}"
    with psycopg.connect(admin_dsn(layout), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
        binary = not args.text and conn.info.server_version >= BINARY_MIN_SERVER_VERSION
    print(f"pgoutput {'binary' if binary else 'text'} mode for both consumers", flush=True)
    try:
        migrate(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            for slot in (ours_slot, recv_slot):
                conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
        print(f"writing {events:,} events, {args.rows_per_transaction} per transaction", flush=True)
        inside_last, end, fill_seconds = write_backlog(
            dsn, events, args.fill_sessions, args.rows_per_transaction
        )
        print(f"backlog written in {fill_seconds:.1f}s, ends at lsn={end}", flush=True)
        settle(dsn)

        profile_to = RESULTS / f"reader-profile-{run_id}.txt" if args.profile else None
        load_start = os.getloadavg()[0]
        ours, marks = drain_ours(
            layout, dsn, ours_slot, topic, args.partitions, events, inside_last, profile_to, binary
        )
        print(f"ours: {ours}", flush=True)
        recv = drain_pg_recvlogical(layout, dsn, dbname, recv_slot, end, events, binary)
        print(f"pg_recvlogical: {recv}", flush=True)
        if confirmed_flush(dsn, recv_slot) <= inside_last:
            raise SystemExit("pg_recvlogical stopped before the end of the backlog")
        result: dict[str, object] = {
            "benchmark": "reader_drain",
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "command": " ".join(["python bench/bench_reader.py", *(argv or sys.argv[1:])]),
            "events": events,
            "partitions": args.partitions,
            "rows_per_transaction": args.rows_per_transaction,
            "binary": binary,
            "native": bool(native.built()) and not native.stale(),
            "load_average": [load_start, os.getloadavg()[0]],
            "fill_seconds": fill_seconds,
            "ours": asdict(ours),
            "ours_acked_seconds": marks["acked"],
            "pg_recvlogical": asdict(recv),
            "ratio": ours.events_per_second / recv.events_per_second,
            "machine": machine_info(layout),
        }
        if profile_to is not None and profile_to.exists():
            result["profile"] = summarize_profile(profile_to)
            print("reader profile (inclusive %):")
            for name, share in result["profile"]:  # type: ignore[attr-defined]
                print(f"  {share:5.1f}%  {name}")
        out = RESULTS / f"reader-{time.strftime('%Y%m%dT%H%M%S')}-{events}.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(
            f"pgoutput {'binary' if binary else 'text'} mode: "
            f"ours {ours.events_per_second:,.0f} events/s, pg_recvlogical "
            f"{recv.events_per_second:,.0f} events/s, ratio {result['ratio']:.2f}x, "
            f"reader peak RSS {ours.peak_rss_mib:.0f} MiB, "
            f"reader CPU {ours.cpu_seconds / events * 1e6:.1f} µs/event -> {out}"
        )
        if args.no_doc or args.rows_per_transaction != 1:
            print("docs/benchmarks.md not updated (it documents the single-row default)")
        else:
            write_doc(result)
    finally:
        with psycopg.connect(admin_dsn(layout), autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                "WHERE database = %s AND active",
                (dbname,),
            )
            time.sleep(0.5)
            conn.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                "WHERE database = %s AND NOT active",
                (dbname,),
            )
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        asyncio.run(delete_topic(layout.kafka_bootstrap, topic))
    return 0


if __name__ == "__main__":
    sys.exit(main())
