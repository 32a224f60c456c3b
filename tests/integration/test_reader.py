"""The WAL -> Kafka reader against real PostgreSQL and Kafka (DESIGN invariants 1, 2, 4, 6)."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import psycopg
import pytest

from replication.errors import PoolerError, ReplicationPrivilegeError
from replication.lsn import LSN, Position
from replication.reader import Reader, ReaderConfig
from tests.integration.kafka_helpers import Record, read_topic

pytestmark = pytest.mark.integration

EMIT = (
    "SELECT api.emit_domain_event(p_stream_id => %s, p_stream_type => 'organization', "
    "p_event_type => 'test.happened', p_event_data => %s::jsonb)"
)


def _config(dsn: str, bootstrap: str, **kw: object) -> ReaderConfig:
    suffix = uuid.uuid4().hex[:10]
    base: dict[str, object] = {
        "dsn": dsn,
        "kafka_bootstrap": bootstrap,
        "topic": f"events-{suffix}",
        "partitions": 4,
        "slot": f"slot_{suffix}",
        "status_interval": 0.2,
    }
    base.update(kw)
    return ReaderConfig(**base)  # type: ignore[arg-type]


@asynccontextmanager
async def running(reader: Reader) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(reader.run(stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def _wait_for(
    predicate: Callable[[], bool], timeout: float = 60, about: object = None
) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"condition not met within {timeout}s: {about}") from None


def _confirmed(dsn: str, slot: str) -> LSN:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
            (slot,),
        ).fetchone()
    assert row is not None and row[0] is not None
    return LSN.parse(row[0])


ODD_TYPE = 'odd "quoted" \\ type, ü ✓\ttab'


def _check_event_type_headers(records: list[Record]) -> None:
    """Every record carries the ``event_type`` header: its value's event_type, in UTF-8."""
    for r in records:
        assert isinstance(r.row["event_type"], str)
        assert r.headers["event_type"] == r.row["event_type"].encode(), r


def _check_order(records: list[Record]) -> None:
    """Per stream: one partition, positions increasing, stream_version increasing."""
    by_stream: dict[bytes, list[Record]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        by_stream[r.key].append(r)
    for recs in by_stream.values():
        assert len({r.partition for r in recs}) == 1
        positions = [r.position for r in recs]
        assert positions == sorted(positions)
        versions = [r.row["stream_version"] for r in recs]
        assert versions == sorted(versions)  # type: ignore[type-var]


async def test_transactions_arrive_once_in_commit_order_with_positions(
    fresh_db: str, kafka_bootstrap: str
) -> None:
    cfg = _config(fresh_db, kafka_bootstrap, initial_snapshot=False)
    reader = Reader(cfg)
    streams = [uuid.uuid4() for _ in range(5)]
    async with running(reader):
        await _wait_for(lambda: reader.stats.active)
        with psycopg.connect(fresh_db, autocommit=True) as conn:
            for i in range(50):  # single-row transactions
                conn.execute(EMIT, (streams[i % 5], f'{{"i": {i}}}'))
            try:  # a rolled-back transaction never arrives
                with conn.transaction():
                    conn.execute(EMIT, (streams[0], '{"rolled": "back"}'))
                    raise psycopg.Rollback()
            except psycopg.Rollback:
                pass
            # A 10,000-row multi-row INSERT: one transaction, one commit LSN, idx 0..9999.
            big = uuid.uuid4()
            conn.execute(
                "INSERT INTO domain_events (stream_id, stream_type, stream_version, event_type, event_data) "
                "SELECT %s, 'organization', g, 'bulk.happened', jsonb_build_object('g', g, 'text', 'héllo ✓') "
                "FROM generate_series(1, 10000) g",
                (big,),
            )
            # A COPY of 500 rows.
            copied = uuid.uuid4()
            with (
                conn.cursor() as cur,
                cur.copy(
                    "COPY domain_events (stream_id, stream_type, stream_version, event_type, event_data) FROM STDIN"
                ) as copy,
            ):
                for v in range(1, 501):
                    copy.write_row(
                        (copied, "organization", v, "copied.happened", '{"copied": true}')
                    )
            # An event type that needs escapes in JSON, and a decoy key in event_data.
            conn.execute(
                "INSERT INTO domain_events (stream_id, stream_type, stream_version, event_type, event_data) "
                "VALUES (%s, 'organization', 1, %s, '{\"event_type\": \"decoy\"}')",
                (uuid.uuid4(), ODD_TYPE),
            )
        expected = 50 + 10000 + 500 + 1
        await _wait_for(
            lambda: reader.stats.events_acked >= expected or reader.stats.sessions > 1,
            120,
            reader.stats,
        )
        assert reader.stats.sessions == 1, reader.stats
        records = await read_topic(kafka_bootstrap, cfg.topic, expected)
    rows_by_id = {r.row["id"]: r for r in records}
    assert len(records) == expected == len(rows_by_id)  # each once
    assert not any(r.row["event_data"] == {"rolled": "back"} for r in records)
    bulk = sorted((r for r in records if r.key == str(big).encode()), key=lambda r: r.position)
    assert len(bulk) == 10000
    assert len({r.position.commit_lsn for r in bulk}) == 1
    assert [r.position.idx for r in bulk] == list(range(10000))
    assert bulk[0].row["event_data"] == {"g": 1, "text": "héllo ✓"}
    copied_recs = [r for r in records if r.key == str(copied).encode()]
    assert len({r.position.commit_lsn for r in copied_recs}) == 1
    _check_order(records)
    _check_event_type_headers(records)
    assert sum(r.headers["event_type"] == ODD_TYPE.encode() for r in records) == 1


async def test_flush_waits_for_kafka_acks(fresh_db: str, kafka_bootstrap: str) -> None:
    """Acks held back: events reach Kafka but the slot's confirmed_flush_lsn stays put."""
    held: list[Callable[[], None]] = []
    gate = {"open": False}

    def hook(pos: Position, error: BaseException | None, apply: Callable[[], None]) -> None:
        if gate["open"]:
            apply()
        else:
            held.append(apply)

    cfg = _config(fresh_db, kafka_bootstrap, initial_snapshot=False)
    reader = Reader(cfg, ack_hook=hook)
    async with running(reader):
        await _wait_for(lambda: reader.stats.active)
        await asyncio.sleep(0.5)
        before = _confirmed(fresh_db, cfg.slot)
        with psycopg.connect(fresh_db, autocommit=True) as conn:
            for i in range(20):
                conn.execute(EMIT, (uuid.uuid4(), f'{{"i": {i}}}'))
        records = await read_topic(kafka_bootstrap, cfg.topic, 20)
        assert len(records) == 20  # Kafka holds them...
        await _wait_for(lambda: len(held) == 20)
        await asyncio.sleep(1.0)  # several status intervals
        # ...but none of them was confirmed. (Keepalives received while nothing of ours
        # was pending may still confirm WAL written meanwhile by other databases of the
        # shared cluster, so `before` itself may move, never past the first held commit.)
        first = min(r.position.commit_lsn for r in records)
        assert before <= _confirmed(fresh_db, cfg.slot) <= first
        gate["open"] = True
        for apply in held:
            apply()
        last = max(r.position.commit_lsn for r in records)
        await _wait_for(lambda: _confirmed(fresh_db, cfg.slot) > last)


async def test_idle_publication_does_not_pin_wal(fresh_db: str, kafka_bootstrap: str) -> None:
    cfg = _config(fresh_db, kafka_bootstrap, initial_snapshot=False)
    reader = Reader(cfg)
    async with running(reader):
        await _wait_for(lambda: reader.stats.active)
        with psycopg.connect(fresh_db, autocommit=True) as conn:
            conn.execute("CREATE TABLE busy (n int)")
            start = _confirmed(fresh_db, cfg.slot)
            for i in range(200):
                conn.execute("INSERT INTO busy VALUES (%s)", (i,))
            conn.execute("SELECT pg_switch_wal()")  # wake the walsender with a keepalive
            await _wait_for(lambda: _confirmed(fresh_db, cfg.slot) > start, timeout=90)


async def test_a_reader_that_caught_up_sends_at_once_whatever_the_linger(
    fresh_db: str, kafka_bootstrap: str
) -> None:
    """Batches are held back only while the reader is behind: with an hour of linger, an
    event committed to an idle reader still reaches Kafka (the empty socket releases it)."""
    cfg = _config(fresh_db, kafka_bootstrap, initial_snapshot=False, batch_linger=3600.0)
    reader = Reader(cfg)
    async with running(reader):
        await _wait_for(lambda: reader.stats.active)
        with psycopg.connect(fresh_db, autocommit=True) as conn:
            conn.execute(EMIT, (uuid.uuid4(), '{"n": 1}'))
        records = await read_topic(kafka_bootstrap, cfg.topic, 1, timeout=30)
        assert len(records) == 1
        await _wait_for(lambda: reader.stats.events_acked == 1, timeout=30)


async def test_initial_snapshot_sends_existing_rows_before_the_stream(
    fresh_db: str, kafka_bootstrap: str
) -> None:
    org = uuid.uuid4()
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        for i in range(30):
            conn.execute(EMIT, (org, f'{{"before": {i}}}'))
    cfg = _config(fresh_db, kafka_bootstrap)
    reader = Reader(cfg)
    async with running(reader):
        await _wait_for(lambda: reader.stats.active)
        with psycopg.connect(fresh_db, autocommit=True) as conn:
            for i in range(5):
                conn.execute(EMIT, (org, f'{{"after": {i}}}'))
        records = await read_topic(kafka_bootstrap, cfg.topic, 35)
    assert len(records) == 35
    assert reader.stats.snapshot_rows == 30
    ordered = sorted(records, key=lambda r: r.offset)  # one stream: one partition
    assert [r.row["stream_version"] for r in ordered] == list(range(1, 36))
    assert all(r.position.commit_lsn == LSN.ZERO for r in ordered[:30])
    assert all(r.position.commit_lsn > LSN.ZERO for r in ordered[30:])
    _check_event_type_headers(records)  # the snapshot's records too


async def test_second_reader_waits_and_takes_over(fresh_db: str, kafka_bootstrap: str) -> None:
    cfg = _config(fresh_db, kafka_bootstrap, initial_snapshot=False)
    first, second = Reader(cfg), Reader(cfg)
    stop_first = asyncio.Event()
    first_task = asyncio.create_task(first.run(stop_first))
    await _wait_for(lambda: first.stats.active)
    async with running(second):
        await _wait_for(lambda: second.stats.waiting_for_slot_pid is not None)
        assert not second.stats.active
        stop_first.set()
        await asyncio.wait_for(first_task, 30)
        await _wait_for(lambda: second.stats.active)
        with psycopg.connect(fresh_db, autocommit=True) as conn:
            conn.execute(EMIT, (uuid.uuid4(), '{"after": "takeover"}'))
        records = await read_topic(kafka_bootstrap, cfg.topic, 1)
    assert records[0].row["event_data"] == {"after": "takeover"}


async def test_pooler_dsn_is_refused_before_connecting(kafka_bootstrap: str) -> None:
    cfg = _config(
        "postgresql://u:p@aws-0-eu-west-1.pooler.supabase.com:6543/postgres", kafka_bootstrap
    )
    with pytest.raises(PoolerError, match="DIRECT host"):
        await Reader(cfg).run(asyncio.Event())


async def test_role_without_replication_gets_a_clear_error(
    fresh_db: str, kafka_bootstrap: str
) -> None:
    role = f"noreplication_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
    dsn = fresh_db.replace("postgres@", f"{role}@")
    try:
        with pytest.raises(ReplicationPrivilegeError, match=f"ALTER ROLE {role} WITH REPLICATION"):
            await Reader(_config(dsn, kafka_bootstrap)).run(asyncio.Event())
    finally:
        with psycopg.connect(fresh_db, autocommit=True) as conn:
            conn.execute(f"DROP ROLE {role}")


async def test_a_row_that_cannot_be_converted_is_dead_lettered_and_the_stream_goes_on(
    fresh_db: str, kafka_bootstrap: str
) -> None:
    cfg = _config(
        fresh_db,
        kafka_bootstrap,
        initial_snapshot=False,
        dead_letter_topic=f"dlq-{uuid.uuid4().hex[:8]}",
    )
    reader = Reader(cfg)
    poison, good = uuid.uuid4(), uuid.uuid4()
    async with running(reader):
        await _wait_for(lambda: reader.stats.active)
        with psycopg.connect(fresh_db, autocommit=True) as conn:
            # 'infinity' is a valid timestamptz but no RFC 3339 instant: the row cannot be
            # represented in the Kafka value.
            conn.execute(
                "INSERT INTO domain_events (stream_id, stream_type, stream_version, event_type, created_at) "
                "VALUES (%s, 'organization', 1, 'test.poison', 'infinity')",
                (poison,),
            )
            conn.execute(EMIT, (good, '{"after": "poison"}'))
        records = await read_topic(kafka_bootstrap, cfg.topic, 1)
        dead = await read_topic(kafka_bootstrap, cfg.dead_letter_topic, 1)
        await _wait_for(lambda: reader.stats.events_acked >= 2, about=reader.stats)
        last = records[0].position.commit_lsn
        await _wait_for(lambda: _confirmed(fresh_db, cfg.slot) > last)
    assert [r.key for r in records] == [str(good).encode()]
    assert reader.stats.dead_lettered == 1
    assert dead[0].row["columns"]["stream_id"] == str(poison)  # type: ignore[index]
    assert "created_at" in str(dead[0].row["reason"])
    assert dead[0].headers["reason_kind"] == b"unconvertible_row"


async def test_a_slot_being_created_elsewhere_is_not_dropped(
    fresh_db: str, kafka_bootstrap: str
) -> None:
    """While another reader copies its initial snapshot its new slot looks inactive and
    unfinished; a second reader must wait for it, not drop it."""
    cfg = _config(fresh_db, kafka_bootstrap)
    key = f"pipeline.reader:{cfg.slot}"
    other = psycopg.connect(fresh_db, autocommit=True)  # plays the first reader
    try:
        other.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (key,))
        other.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (cfg.slot,))
        other_pid = other.info.backend_pid
        reader = Reader(cfg)
        async with running(reader):
            await _wait_for(lambda: reader.stats.waiting_for_slot_pid == other_pid)
            await asyncio.sleep(1.0)
            assert not reader.stats.active
            with psycopg.connect(fresh_db) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", (cfg.slot,)
                ).fetchone()
            assert row == (1,)  # still the other reader's slot
            other.close()  # the first reader dies mid-snapshot
            await _wait_for(lambda: reader.stats.active)  # recreated, snapshot and all
    finally:
        other.close()
