"""The drain's backlog: N mixed events written with plain SQL, then a sentinel.

One event per transaction, through ``api.emit_domain_event`` (as an application writes
them): one in ``bootstrap_every`` an ``organization.bootstrap.initiated`` of a new
organization, one in ten a ``workflow.queue.completed`` (a queue projection row), the rest
``invitation.email.sent`` over 500 streams per session. Then one *sentinel* transaction
with an event on every partition: a drain is over when every partition got past it.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg

from replication.partitioner import partition_for

PARTITIONS = 8
DEFAULT_BOOTSTRAP_EVERY = 1000

_MIXED_FILL = """
CREATE PROCEDURE pg_temp.bench_mixed(p_first bigint, p_last bigint, p_session int,
                                     p_streams int, p_bootstrap_every int)
LANGUAGE plpgsql AS $$
DECLARE
    i bigint;
    s uuid;
    o uuid;
BEGIN
    FOR i IN p_first..p_last LOOP
        s := md5('bench-stream-' || p_session || '-' || (i % p_streams))::uuid;
        IF i % p_bootstrap_every = 0 THEN
            o := gen_random_uuid();
            PERFORM api.emit_domain_event(
                p_stream_id => o, p_stream_type => 'organization',
                p_event_type => 'organization.bootstrap.initiated',
                p_event_data => jsonb_build_object(
                    'name', 'Bench Organization ' || left(o::text, 8),
                    'subdomain', 'b' || left(replace(o::text, '-', ''), 12),
                    'admins', jsonb_build_array(jsonb_build_object(
                        'email', 'admin@' || left(replace(o::text, '-', ''), 12) || '.bench.test',
                        'role', 'organization_admin'))),
                p_event_metadata => '{"source": "bench-drain"}'::jsonb,
                p_idempotency_key => 'bench-drain:' || o);
        ELSIF i % 10 = 0 THEN
            PERFORM api.emit_domain_event(
                p_stream_id => s, p_stream_type => 'organization',
                p_event_type => 'workflow.queue.completed',
                p_event_data => jsonb_build_object('job_id', md5('job-' || i)::uuid,
                                                   'workflow_id', 'org-bootstrap-' || s),
                p_event_metadata => '{"source": "bench-drain"}'::jsonb);
        ELSE
            PERFORM api.emit_domain_event(
                p_stream_id => s, p_stream_type => 'organization',
                p_event_type => 'invitation.email.sent',
                p_event_data => jsonb_build_object('invitation_id', md5('inv-' || i)::uuid,
                                                   'email', 'user' || i || '@bench.test'),
                p_event_metadata => '{"source": "bench-drain"}'::jsonb);
        END IF;
        COMMIT;
    END LOOP;
END;
$$
"""

_SENTINEL_SQL = (
    "SELECT api.emit_domain_event(p_stream_id => %s, p_stream_type => 'organization', "
    "p_event_type => 'invitation.email.sent', p_event_data => jsonb_build_object("
    "'invitation_id', gen_random_uuid(), 'email', 'sentinel@bench.test'), "
    'p_event_metadata => \'{"source": "bench-drain"}\'::jsonb)'
)


def _fill_part(dsn: str, first: int, last: int, session: int, every: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(_MIXED_FILL)
        conn.execute("CALL pg_temp.bench_mixed(%s, %s, %s, 500, %s)", (first, last, session, every))


def mixed_backlog(dsn: str, count: int, bootstrap_every: int, sessions: int = 2) -> int:
    """Commit ``count`` single-event transactions; returns how many are bootstraps."""
    bounds = [count * k // sessions for k in range(sessions + 1)]
    with ThreadPoolExecutor(sessions) as pool:
        futures = [
            pool.submit(_fill_part, dsn, bounds[k], bounds[k + 1] - 1, k, bootstrap_every)
            for k in range(sessions)
            if bounds[k + 1] > bounds[k]
        ]
        for fut in futures:
            fut.result()
    return bootstraps_in(count, bootstrap_every, sessions)


def bootstraps_in(count: int, bootstrap_every: int, sessions: int = 2) -> int:
    """How many of the backlog's events are bootstraps: i in [0, count) with
    i % bootstrap_every == 0, each session numbering its own slice of the range (pure)."""
    bounds = [count * k // sessions for k in range(sessions + 1)]
    return sum(
        len(range(bounds[k] + (-bounds[k]) % bootstrap_every, bounds[k + 1], bootstrap_every))
        for k in range(sessions)
    )


def sentinel_streams(partitions: int = PARTITIONS) -> list[uuid.UUID]:
    """One stream id per partition (the reader keys records by the stream id's text)."""
    found: dict[int, uuid.UUID] = {}
    while len(found) < partitions:
        s = uuid.uuid4()
        found.setdefault(partition_for(str(s).encode(), partitions), s)
    return [found[p] for p in range(partitions)]


def write_sentinel(dsn: str) -> str:
    """One transaction with an event on every partition; returns an LSN inside it, at or
    before its commit record (which is the ``commit_lsn`` the reader stamps on it)."""
    with psycopg.connect(dsn) as conn:
        for s in sentinel_streams():
            conn.execute(_SENTINEL_SQL, (s,))
        row = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
        conn.commit()
    if row is None:
        raise RuntimeError("pg_current_wal_insert_lsn() returned no row")
    return str(row[0])
