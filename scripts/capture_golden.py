"""Capture real pgoutput CopyData frames from PostgreSQL 15 as golden test files.

Starts a throwaway cluster (initdb in a temporary folder, ``wal_level=logical``),
creates ``domain_events`` and a publication for it, and for each scenario: creates a
fresh pgoutput slot, runs the scenario's SQL, then reads the raw CopyData frames of a
``START_REPLICATION`` through psycopg's public ``pq`` API until the scenario's last
commit arrives. Each file holds the frames as ``uint32 big-endian length + bytes``.
The cluster is stopped and removed at the end, whatever happens.

    .venv/bin/python scripts/capture_golden.py            # writes tests/unit/golden/
    .venv/bin/python scripts/capture_golden.py --out DIR --port 55499
    .venv/bin/python scripts/capture_golden.py --only unicode.binary copy.binary

Scenarios named ``*.binary`` read the same SQL's changes with pgoutput's
``binary 'true'`` (columns in their types' send formats, PostgreSQL 14+).

As root, PostgreSQL's binaries are run as the ``postgres`` user (initdb refuses root).
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent

SCHEMA = """
CREATE TABLE domain_events (
    id               uuid        PRIMARY KEY,
    stream_id        uuid        NOT NULL,
    stream_type      text        NOT NULL,
    stream_version   integer     NOT NULL,
    event_type       text        NOT NULL,
    event_data       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    event_metadata   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    idempotency_key  text,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE other_table (id integer PRIMARY KEY, note text);
CREATE PUBLICATION golden_pub FOR TABLE domain_events;
"""

INSERT = (
    "INSERT INTO domain_events (id, stream_id, stream_type, stream_version, event_type,"
    " event_data, event_metadata, idempotency_key, created_at) VALUES "
)


def uid(n: int) -> str:
    """Deterministic UUIDs, so the golden test can assert exact rows."""
    return f"00000000-0000-4000-8000-{n:012d}"


def large_event_data() -> str:
    """A jsonb document of a bit over 1 MB (the test rebuilds the same value)."""
    items = ",".join(f'{{"i": {i}, "s": "{"x" * 100}"}}' for i in range(10_000))
    return f'{{"items": [{items}]}}'


@dataclass
class Scenario:
    name: str
    run: Callable[[psycopg.Connection[tuple[object, ...]]], None]
    commits: int = 1  # commits (of transactions with changes) to wait for
    session_options: dict[str, str] = field(default_factory=dict)
    gzip: bool = False
    binary: bool = False


def _multi_row(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    conn.execute(
        INSERT + "(%s, %s, 'organization', 1, 'organization.bootstrap.initiated',"
        ' \'{"name": "Acme", "subdomain": "acme"}\', \'{"source": "api"}\', \'k-1\','
        " '2026-11-26 03:00:32.258123+00'),"
        "(%s, %s, 'organization', 2, 'workflow.queue.pending', '{\"job_id\": \"j\"}',"
        " '{}', 'k-2', '2026-11-26 03:00:32.3+00'),"
        "(%s, %s, 'organization', 3, 'workflow.queue.claimed', '{}', '{}', NULL,"
        " '2026-11-26 03:00:33+00')",
        (uid(1), uid(100), uid(2), uid(100), uid(3), uid(100)),
    )


def _unicode(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    conn.execute(
        INSERT + "(%s, %s, 'organization', 1, 'organization.created', %s, %s, %s,"
        " '2026-11-26 03:00:32.5+00')",
        (
            uid(10),
            uid(101),
            '{"name": "Zürich Ålesund 東京 🚀", "note": "e\\u0301 \\"q\\" \\\\ tab\\t"}',
            '{"source": "тест"}',
            "ключ-🔑",
        ),
    )


def _large(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    conn.execute(
        INSERT + "(%s, %s, 'organization', 1, 'organization.bulk', %s, '{}', NULL,"
        " '2026-11-26 03:00:34.000001+00')",
        (uid(20), uid(102), large_event_data()),
    )


def _null_key(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    conn.execute(
        INSERT + "(%s, %s, 'invitation', 7, 'user.invited', '{\"email\": \"a@b.c\"}',"
        " '{\"causation_id\": null}', NULL, '2026-11-26 03:00:35.123+00')",
        (uid(30), uid(103)),
    )


def _copy(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    with (
        conn.cursor() as cur,
        cur.copy(
            "COPY domain_events (id, stream_id, stream_type, stream_version, event_type,"
            " event_data, event_metadata, idempotency_key, created_at) FROM STDIN"
        ) as copy,
    ):
        for i in range(4):
            copy.write_row(
                (
                    uid(40 + i),
                    uid(104),
                    "organization",
                    i + 1,
                    "organization.imported",
                    f'{{"n": {i}}}',
                    "{}",
                    None if i % 2 else f"copy-{i}",
                    f"2026-11-26 03:00:4{i}+00",
                )
            )


def _timezone(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    conn.execute(
        INSERT + "(%s, %s, 'organization', 1, 'tz.test', '{}', '{}', NULL,"
        " '2026-11-26 03:00:32+00'),"
        "(%s, %s, 'organization', 2, 'tz.test', '{}', '{}', NULL,"
        " '2026-11-26 03:00:32.25+00')",
        (uid(50), uid(105), uid(51), uid(105)),
    )


def _other_table_then_event(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    conn.execute("INSERT INTO other_table VALUES (1, 'not published')")
    conn.commit()
    conn.execute(
        INSERT + "(%s, %s, 'organization', 1, 'after.other', '{}', '{}', NULL,"
        " '2026-11-26 03:00:36+00')",
        (uid(60), uid(106)),
    )


SCENARIOS = [
    Scenario("multi_row_insert", _multi_row),
    Scenario("unicode", _unicode),
    Scenario("large_jsonb", _large, gzip=True),
    Scenario("null_idempotency_key", _null_key),
    Scenario("copy", _copy),
    Scenario("timezone_offset", _timezone, session_options={"timezone": "Asia/Kolkata"}),
    Scenario("other_table_then_event", _other_table_then_event),
]
# The same rows in binary mode: tests/unit/replication/test_values_binary.py checks that they give
# the Kafka values the text captures give.
SCENARIOS += [
    Scenario(
        f"{sc.name}.binary",
        sc.run,
        session_options=sc.session_options,
        gzip=sc.gzip,
        binary=True,
    )
    for sc in SCENARIOS
    if sc.name
    in {
        "multi_row_insert",
        "unicode",
        "large_jsonb",
        "null_idempotency_key",
        "copy",
        "timezone_offset",
    }
]


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _read_frames(dsn: str, sc: Scenario) -> list[bytes]:
    options = " ".join(f"-c {k}={v}" for k, v in sc.session_options.items())
    conn = psycopg.connect(dsn, autocommit=True, replication="database", options=options)
    try:
        pgconn = conn.pgconn
        opts = "proto_version '1', publication_names 'golden_pub'"
        if sc.binary:
            opts += ", binary 'true'"
        pgconn.send_query(f"START_REPLICATION SLOT golden LOGICAL 0/0 ({opts})".encode())
        pgconn.consume_input()
        result = pgconn.get_result()
        if result is None or result.status != psycopg.pq.ExecStatus.COPY_BOTH:
            raise RuntimeError(f"START_REPLICATION failed: {pgconn.get_error_message()!r}")
        frames: list[bytes] = []
        commits = 0
        changes = False
        while commits < sc.commits:
            nbytes, data = pgconn.get_copy_data(0)  # blocking read of one CopyData
            if nbytes < 0:
                raise RuntimeError(f"replication stream ended: {pgconn.get_error_message()!r}")
            frame = bytes(data)
            frames.append(frame)
            # Count commits that closed a transaction with changes, so a transaction
            # that reached us empty (other tables only) does not end the capture early.
            tag = frame[25:26] if frame[:1] == b"w" else b""
            if tag in (b"I", b"U", b"D", b"T"):
                changes = True
            elif tag in (b"C", b"c") and changes:
                commits += 1
                changes = False
        return frames
    finally:
        conn.close()


def capture(dsn: str, out: Path, only: set[str] | None = None) -> None:
    """Run every scenario (or those in ``only``) against ``dsn``; write its frames to ``out``."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP PUBLICATION IF EXISTS golden_pub")
        conn.execute("DROP TABLE IF EXISTS domain_events, other_table")
        conn.execute(SCHEMA)
    out.mkdir(parents=True, exist_ok=True)
    for sc in SCENARIOS:
        if only is not None and sc.name not in only:
            continue
        with psycopg.connect(dsn, autocommit=True) as conn:
            # Scenarios reuse fixed ids: start each from an empty table.
            conn.execute("TRUNCATE domain_events, other_table")
            conn.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                " WHERE slot_name = 'golden'"
            )
            conn.execute("SELECT pg_create_logical_replication_slot('golden', 'pgoutput')")
        with psycopg.connect(dsn) as conn:
            sc.run(conn)
            conn.commit()
        frames = _read_frames(dsn, sc)
        blob = b"".join(struct.pack(">I", len(f)) + f for f in frames)
        path = out / f"{sc.name}.bin"
        if sc.gzip:
            path = path.with_suffix(".bin.gz")
            blob = gzip.compress(blob, compresslevel=9, mtime=0)
        path.write_bytes(blob)
        print(f"{path.relative_to(out.parent)}: {len(frames)} frames, {len(blob)} bytes")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_drop_replication_slot('golden')")


def main() -> int:
    """Start a throwaway cluster, capture every scenario, stop and remove the cluster."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "unit" / "golden")
    ap.add_argument("--pg-bin", type=Path, default=Path("/usr/lib/postgresql/15/bin"))
    ap.add_argument("--port", type=int, default=55499)
    ap.add_argument("--only", nargs="+", metavar="SCENARIO", help="capture only these scenarios")
    args = ap.parse_args()
    names = {sc.name for sc in SCENARIOS}
    if args.only and not set(args.only) <= names:
        ap.error(f"unknown scenario(s) {sorted(set(args.only) - names)}; known: {sorted(names)}")

    base = Path(tempfile.mkdtemp(prefix="goldpg-"))
    data = base / "data"
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
    pg_ctl = str(args.pg_bin / "pg_ctl")
    try:
        subprocess.run(
            _as_postgres(
                [str(args.pg_bin / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres"]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        server_opts = (
            f"-c wal_level=logical -c port={args.port} -c listen_addresses=127.0.0.1"
            f" -c unix_socket_directories={base} -c max_wal_senders=4"
            " -c max_replication_slots=4"
        )
        subprocess.run(
            _as_postgres(
                [pg_ctl, "-D", str(data), "-o", server_opts, "-l", str(base / "log"), "-w", "start"]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        try:
            capture(
                f"host=127.0.0.1 port={args.port} user=postgres dbname=postgres",
                args.out,
                set(args.only) if args.only else None,
            )
        finally:
            subprocess.run(
                _as_postgres([pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"]),
                check=False,
                stdout=subprocess.DEVNULL,
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
