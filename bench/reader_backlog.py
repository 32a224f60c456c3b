"""The reader benchmarks' backlog: a fresh database's ``domain_events`` filled with
single-row (or ``rows``-row) transactions by a server-side procedure in parallel
sessions, then settled, and the slot positions the drains are timed against
(``bench/bench_reader.py``, ``bench/bench_hotpath.py``)."""

from __future__ import annotations

import time

import psycopg

from pipeline.dev.layout import DevLayout
from replication.lsn import LSN

FILL_PROCEDURE = """
CREATE PROCEDURE pg_temp.bench_fill(p_first bigint, p_last bigint, p_streams int, p_rows int)
LANGUAGE plpgsql AS $$
DECLARE
    i bigint;
BEGIN
    FOR i IN p_first..p_last LOOP
        INSERT INTO domain_events (stream_id, stream_type, stream_version, event_type,
                                   event_data, event_metadata)
        VALUES (md5('bench-stream-' || (i % p_streams))::uuid, 'organization',
                i / p_streams + 1, 'organization.bench.happened',
                jsonb_build_object('seq', i, 'name', 'Organization ' || i,
                                   'subdomain', 'org-' || i, 'plan', 'standard'),
                jsonb_build_object('source', 'bench', 'correlation_id', md5(i::text)));
        IF (i + 1) % p_rows = 0 THEN
            COMMIT;
        END IF;
    END LOOP;
END;
$$
"""


def admin_dsn(layout: DevLayout) -> str:
    """The dev server's maintenance database, where benchmark databases are created."""
    return f"postgresql://postgres@{layout.host}:{layout.pg_port}/postgres"


def confirmed_flush(dsn: str, slot: str) -> LSN:
    """The slot's confirmed_flush_lsn (0/0 before the first confirmation)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
            (slot,),
        ).fetchone()
    return LSN.parse(row[0]) if row and row[0] else LSN.ZERO


def _fill_part(dsn: str, first: int, last: int, streams: int, rows: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute(FILL_PROCEDURE)
        conn.execute("CALL pg_temp.bench_fill(%s, %s, %s, %s)", (first, last, streams, rows))


def write_backlog(dsn: str, events: int, sessions: int, rows: int) -> tuple[LSN, LSN, float]:
    """Commit ``events`` events, ``rows`` per transaction; returns (inside_last, end, seconds).

    ``inside_last`` is a WAL position inside the last transaction, before its commit
    record: a slot confirmed past it has confirmed the last commit. ``end`` is the
    insert position after everything, pg_recvlogical's ``--endpos``.
    """
    started = time.perf_counter()
    streams = 1000
    bounds = [events * k // sessions for k in range(sessions + 1)]
    # The last transaction is written alone, below, so the bulk ends before it.
    bounds[-1] -= 1
    with _parallel(sessions) as pool:
        for k in range(sessions):
            if bounds[k + 1] > bounds[k]:
                pool.submit(_fill_part, dsn, bounds[k], bounds[k + 1] - 1, streams, rows)
    last = events - 1
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO domain_events (stream_id, stream_type, stream_version, event_type, "
            "event_data) VALUES (md5('bench-stream-' || (%s::bigint %% %s))::uuid, "
            "'organization', %s::bigint / %s + 1, 'organization.bench.happened', '{}')",
            (last, streams, last, streams),
        )
        row = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
        assert row is not None
        inside_last = LSN.parse(row[0])
        conn.commit()
        row = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
        assert row is not None
        end = LSN.parse(row[0])
    return inside_last, end, time.perf_counter() - started


def settle(dsn: str) -> None:
    """Do now what PostgreSQL would otherwise do during the drains: autovacuum of the new
    rows and the checkpoint their WAL calls for (both are CPU and I/O the drains would
    share at unpredictable moments, differently for each consumer)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) domain_events")
        conn.execute("CHECKPOINT")


class _parallel:
    """A tiny thread pool whose exit waits for every job and re-raises the first error."""

    def __init__(self, workers: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=workers)
        self._futures: list[object] = []

    def __enter__(self) -> _parallel:
        return self

    def submit(self, fn: object, *args: object) -> None:
        self._futures.append(self._pool.submit(fn, *args))  # type: ignore[arg-type]

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True)
        for fut in self._futures:
            fut.result()  # type: ignore[attr-defined]
