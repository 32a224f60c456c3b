"""The reader as a real process, SIGKILLed mid-stream and restarted (DESIGN invariants 1, 2).

A background writer commits 100,000 events (multi-row and single-row transactions) while
``pipeline reader`` streams them into Kafka; the process is killed without any cleanup,
once at a moment chosen by progress (Kafka holds >= 20,000 records) and once at the
deterministic kill point ``reader.after_ack_before_flush`` (committed in Kafka, not yet
confirmed to PostgreSQL), then restarted until it has caught up; every event is in the
topic exactly once (read_committed), however much of it the slot resent. Throughout, a sampler
reads the slot's confirmed_flush_lsn and then Kafka's high watermarks: every transaction
whose commit LSN lies below a sampled confirmed_flush_lsn must already have been in
Kafka at that moment (the tracker confirms a commit's END lsn, so the transactions the
slot will never send again are exactly those with ``commit_lsn < confirmed_flush``).

The harness is in reader_crash_harness.py; a server with ``wal_level=replica``:
test_reader_wal_level.py.
"""

from __future__ import annotations

import asyncio
import re
import signal
import uuid
from bisect import bisect_left
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from replication.lsn import LSN
from tests.integration.reader_crash_harness import (
    CATCH_UP_TIMEOUT,
    EVENTS,
    Collector,
    Copy,
    Sample,
    Watch,
    Writer,
    background,
    log_tail,
    reader_env,
    reader_process,
    until,
)

pytestmark = pytest.mark.integration


# -- the scenario -------------------------------------------------------------------------


@dataclass(slots=True)
class Outcome:
    copies: list[Copy]
    samples: list[Sample]
    confirmed_at_kill: LSN
    watermarks_at_kill: dict[int, int]
    exit_code: int | None


async def _crash_and_restart(
    dsn: str,
    bootstrap: str,
    tmp_path: Path,
    *,
    kill_at: str | None,
    kill_when_kafka_holds: int | None,
    backlog_first: int | None,
) -> Outcome:
    suffix = uuid.uuid4().hex[:10]
    topic, slot = f"crash-{suffix}", f"crash_{suffix}"
    env = reader_env(dsn, bootstrap, topic, slot)
    log = tmp_path / "reader.log"
    writer = Writer(dsn, pause_after=backlog_first)
    if backlog_first is not None:
        # The slot exists before the backlog; the reader takes it over as it finds it.
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
        writer.start()
        await asyncio.to_thread(writer.paused.wait, CATCH_UP_TIMEOUT)
        assert writer.paused.is_set(), writer.error
    collector = Collector(bootstrap, topic)
    async with Watch(dsn, bootstrap, topic, slot) as watch:
        with reader_process(env, log, kill_at) as proc:

            async def streaming() -> bool:
                state = await watch.slot()
                assert proc.poll() is None, log_tail(log)
                return state is not None and state[0]

            await until(streaming, lambda: log_tail(log))
            async with background(collector.run(), watch.run()):
                if backlog_first is None:
                    writer.start()
                else:
                    writer.resume.set()
                if kill_when_kafka_holds is not None:

                    async def enough() -> bool:
                        # Mid-stream: Kafka holds enough and the slot confirmed some of it.
                        assert proc.poll() is None, log_tail(log)
                        sample = await watch.sample()
                        first = collector.first_commit
                        return (
                            sum(sample.watermarks.values()) >= kill_when_kafka_holds
                            and first is not None
                            and sample.confirmed > first
                        )

                    await until(enough, lambda: watch.samples[-1:], CATCH_UP_TIMEOUT)
                    proc.send_signal(signal.SIGKILL)
                await asyncio.to_thread(proc.wait, CATCH_UP_TIMEOUT)
                exit_code = proc.returncode

                # The walsender notices the dead connection; from then on the slot's
                # confirmed position is what the killed reader had reported.
                async def released() -> bool:
                    state = await watch.slot()
                    return state is not None and not state[0]

                await until(released, lambda: "slot still active after the kill")
                at_kill = await watch.sample()

                with reader_process(env, log) as again:
                    await asyncio.to_thread(writer.join, CATCH_UP_TIMEOUT)
                    assert not writer.is_alive() and writer.error is None, writer.error
                    with psycopg.connect(dsn) as conn:
                        row = conn.execute(
                            "SELECT array_agg(id::text) FROM domain_events"
                        ).fetchone()
                    assert row is not None
                    all_ids = set(row[0])
                    assert len(all_ids) == EVENTS

                    async def caught_up() -> bool:
                        assert again.poll() is None, log_tail(log)
                        if not all_ids <= collector.ids:
                            return False
                        last = max(c.position.commit_lsn for c in collector.copies)
                        sample = await watch.sample()
                        return sample.confirmed > last

                    await until(
                        caught_up,
                        lambda: (len(collector.ids), watch.samples[-1:], log_tail(log)),
                        CATCH_UP_TIMEOUT,
                    )
                    again.send_signal(signal.SIGTERM)
                    assert await asyncio.to_thread(again.wait, 60) == 0, log_tail(log)
                final = await watch.watermarks()

                async def collected() -> bool:
                    return collector.holds_up_to(final)

                await until(collected, lambda: (collector.next_offset, final))
    return Outcome(
        collector.copies, watch.samples, at_kill.confirmed, at_kill.watermarks, exit_code
    )


def _check(dsn: str, outcome: Outcome) -> None:
    """Every invariant the crash must not break."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT id::text, xmin::text::bigint, stream_id::text, stream_version "
            "FROM domain_events"
        ).fetchall()
    assert len(rows) == EVENTS
    txn_of = {r[0]: r[1] for r in rows}

    # Kafka holds every event; a repeat carries the position of the first copy.
    ordered = sorted(outcome.copies, key=lambda c: (c.partition, c.offset))
    first: dict[str, Copy] = {}
    repeats: list[Copy] = []
    for c in ordered:
        seen = first.setdefault(c.event_id, c)
        if seen is not c:
            repeats.append(c)
            assert c.position == seen.position, (seen, c)
            assert c.partition == seen.partition, (seen, c)
    assert set(first) == set(txn_of), "Kafka does not hold exactly the table's events"

    # Position (invariant 1): one commit LSN per transaction, idx 0..n-1 inside it.
    by_txn: dict[int, list[Copy]] = defaultdict(list)
    for event_id, c in first.items():
        by_txn[txn_of[event_id]].append(c)
    commit_of: dict[int, LSN] = {}
    for xid, copies in by_txn.items():
        lsns = {c.position.commit_lsn for c in copies}
        assert len(lsns) == 1, (xid, lsns)
        assert sorted(c.position.idx for c in copies) == list(range(len(copies))), xid
        commit_of[xid] = lsns.pop()
    assert len(set(commit_of.values())) == len(commit_of)

    # Order (invariant 4): per stream one partition; first copies in version order.
    per_stream: dict[bytes, list[Copy]] = defaultdict(list)
    for c in sorted(first.values(), key=lambda c: (c.partition, c.offset)):
        per_stream[c.key].append(c)
    for key, copies in per_stream.items():
        assert len({c.partition for c in copies}) == 1, key
        assert [c.stream_version for c in copies] == list(range(1, len(copies) + 1)), key
        assert [c.position for c in copies] == sorted(c.position for c in copies), key

    # Flush only what is durable (invariant 2), at every sample: each transaction with
    # commit_lsn < confirmed_flush_lsn was entirely below the watermarks read after it.
    txns = sorted(commit_of.items(), key=lambda t: t[1])
    commits = [lsn for _, lsn in txns]
    reach: list[dict[int, int]] = []  # per prefix of txns: highest first-copy offset + 1
    running: dict[int, int] = defaultdict(int)
    for xid, _ in txns:
        for c in by_txn[xid]:
            running[c.partition] = max(running[c.partition], c.offset + 1)
        reach.append(dict(running))
    for sample in outcome.samples:
        k = bisect_left(commits, sample.confirmed)  # txns [0, k) have commit_lsn < confirmed
        if k == 0:
            continue
        for p, needed in reach[k - 1].items():
            assert needed <= sample.watermarks.get(p, 0), (
                f"slot confirmed {sample.confirmed} while partition {p} held "
                f"{sample.watermarks.get(p, 0)} records but {needed} were needed"
            )

    # Each event once in Kafka (invariant 8): the restart resent what the slot had not
    # confirmed, and dropped what the topic already held.
    assert not repeats, f"{len(repeats)} event(s) in the topic twice, e.g. {repeats[:3]}"
    confirmed_txns = bisect_left(commits, outcome.confirmed_at_kill)
    assert 0 < confirmed_txns < len(commits), "the kill was not in the middle of the stream"


async def test_sigkill_mid_stream_loses_nothing(
    fresh_db: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Killed at a moment chosen by progress: Kafka already holds >= 20,000 records."""
    outcome = await _crash_and_restart(
        fresh_db,
        kafka_bootstrap,
        tmp_path,
        kill_at=None,
        kill_when_kafka_holds=20_000,
        backlog_first=None,
    )
    assert outcome.exit_code == -signal.SIGKILL
    _check(fresh_db, outcome)


async def test_sigkill_after_ack_before_flush_loses_nothing(
    fresh_db: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Killed at the deterministic point where Kafka acked what the slot was not told.

    Half the events are a backlog written before the reader starts, so the kill at the
    third status update that would advance the flush position is well inside the stream.
    """
    outcome = await _crash_and_restart(
        fresh_db,
        kafka_bootstrap,
        tmp_path,
        kill_at="reader.after_ack_before_flush:3",
        kill_when_kafka_holds=None,
        backlog_first=EVENTS // 2,
    )
    assert outcome.exit_code == -signal.SIGKILL  # the process killed itself at the point
    _check(fresh_db, outcome)
    # Kafka held events the slot had not confirmed: the slot sent them again and the
    # restarted reader dropped them (_check found none twice).
    log = (tmp_path / "reader.log").read_text(errors="replace")
    dropped = re.search(r"(\d+) event\(s\) already in topic \S+ were not sent again", log)
    assert dropped is not None and int(dropped[1]) > 0, "expected the restart to drop some"
