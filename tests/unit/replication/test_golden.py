"""Decode CopyData frames captured from a real PostgreSQL 15 (scripts/capture_golden.py).

A small in-test consumer plays the reader's part: it assigns positions (commit LSN,
index in transaction), converts rows, and feeds the flush tracker, so these tests
check the decoder, the row conversion and invariants 1 and 2 against real bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID

import pytest

from replication.decoder import (
    Begin,
    Commit,
    Insert,
    PrimaryKeepalive,
    Relation,
    XLogData,
    decode_pgoutput,
    parse_copy_data,
)
from replication.lsn import LSN, Position
from replication.rows import RelationCache
from replication.tracker import FlushTracker
from tests.unit.pgoutput_builder import read_frames
from tests.unit.row_oracle import DomainEventRow, domain_event


def uid(n: int) -> UUID:
    return UUID(f"00000000-0000-4000-8000-{n:012d}")


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


@dataclass
class Replay:
    """What a reader would produce from one golden file."""

    events: list[tuple[Position, DomainEventRow]] = field(default_factory=list)
    commits: list[tuple[LSN, LSN, int]] = field(default_factory=list)  # commit, end, n
    insert_wal_starts: list[LSN] = field(default_factory=list)
    begin_wal_start: list[LSN] = field(default_factory=list)
    keepalives: int = 0
    tracker: FlushTracker = field(default_factory=FlushTracker)


def replay(name: str) -> Replay:
    out = Replay()
    cache = RelationCache()
    rows: list[DomainEventRow] = []  # of the transaction being received
    for raw in read_frames(name):
        frame = parse_copy_data(raw)
        if isinstance(frame, PrimaryKeepalive):
            out.keepalives += 1
            out.tracker.note_keepalive(frame.wal_end)
            continue
        assert isinstance(frame, XLogData)
        msg = decode_pgoutput(frame.payload)
        if isinstance(msg, Begin):
            out.begin_wal_start.append(frame.wal_start)
            assert msg.commit_time.year >= 2025
        elif isinstance(msg, Relation):
            cache.add(msg)
        elif isinstance(msg, Insert):
            out.insert_wal_starts.append(frame.wal_start)
            rows.append(domain_event(cache, msg))
        elif isinstance(msg, Commit):
            out.tracker.register_at(msg.commit_lsn.value, msg.end_lsn.value, len(rows))
            out.commits.append((msg.commit_lsn, msg.end_lsn, len(rows)))
            out.events += [(Position(msg.commit_lsn, i), row) for i, row in enumerate(rows)]
            rows = []
    assert not rows, "a transaction without its commit"
    return out


def row(n: int, stream: int, version: int, event_type: str, **kw: object) -> DomainEventRow:
    values: dict[str, object] = {
        "id": uid(n),
        "stream_id": uid(stream),
        "stream_type": "organization",
        "stream_version": version,
        "event_type": event_type,
        "event_data": {},
        "event_metadata": {},
        "idempotency_key": None,
        **kw,
    }
    return DomainEventRow(**values)  # type: ignore[arg-type]


def test_multi_row_insert_shares_one_commit_lsn() -> None:
    r = replay("multi_row_insert.bin")
    assert len(r.commits) == 1
    commit_lsn, end_lsn, n = r.commits[0]
    assert n == 3
    assert [p for p, _ in r.events] == [Position(commit_lsn, i) for i in range(3)]
    assert [e for _, e in r.events] == [
        row(1, 100, 1, "organization.bootstrap.initiated",
            event_data={"name": "Acme", "subdomain": "acme"}, event_metadata={"source": "api"},
            idempotency_key="k-1", created_at=ts("2026-11-26 03:00:32.258123+00:00")),
        row(2, 100, 2, "workflow.queue.pending", event_data={"job_id": "j"},
            idempotency_key="k-2", created_at=ts("2026-11-26 03:00:32.3+00:00")),
        row(3, 100, 3, "workflow.queue.claimed", created_at=ts("2026-11-26 03:00:33+00:00")),
    ]  # fmt: skip
    # Invariant 1: an Insert's own LSN is not its position; BEGIN shares the first
    # change's LSN; the commit LSN comes after every change.
    assert r.begin_wal_start == [r.insert_wal_starts[0]]
    assert all(w < commit_lsn for w in r.insert_wal_starts)
    assert commit_lsn < end_lsn


def test_copy_rows_share_even_their_wal_position() -> None:
    r = replay("copy.bin")
    commit_lsn, _, n = r.commits[0]
    assert n == 4
    # COPY writes one multi-insert WAL record: all four Inserts carry the same LSN.
    assert len(set(r.insert_wal_starts)) == 1
    assert [p for p, _ in r.events] == [Position(commit_lsn, i) for i in range(4)]
    assert [e for _, e in r.events] == [
        row(40 + i, 104, i + 1, "organization.imported", event_data={"n": i},
            idempotency_key=None if i % 2 else f"copy-{i}",
            created_at=ts(f"2026-11-26 03:00:4{i}+00:00"))
        for i in range(4)
    ]  # fmt: skip


def test_unicode() -> None:
    (_, event), = replay("unicode.bin").events  # fmt: skip
    assert event == row(
        10, 101, 1, "organization.created",
        event_data={"name": "Zürich Ålesund 東京 🚀", "note": 'e\u0301 "q" \\ tab\t'},
        event_metadata={"source": "тест"}, idempotency_key="ключ-🔑",
        created_at=ts("2026-11-26 03:00:32.5+00:00"),
    )  # fmt: skip
    assert "東京 🚀".encode() in event.to_json_bytes()


def test_large_jsonb_over_one_megabyte() -> None:
    (_, event), = replay("large_jsonb.bin.gz").events  # fmt: skip
    assert event.event_data == {"items": [{"i": i, "s": "x" * 100} for i in range(10_000)]}
    assert len(event.to_json_bytes()) > 1_000_000
    assert event.created_at == ts("2026-11-26 03:00:34.000001+00:00")


def test_null_idempotency_key() -> None:
    (_, event), = replay("null_idempotency_key.bin").events  # fmt: skip
    assert event == row(
        30, 103, 7, "user.invited", stream_type="invitation", event_data={"email": "a@b.c"},
        event_metadata={"causation_id": None}, created_at=ts("2026-11-26 03:00:35.123+00:00"),
    )  # fmt: skip


def test_timestamptz_in_session_time_zone() -> None:
    # Captured with TimeZone=Asia/Kolkata: PostgreSQL prints +05:30; no fraction on one.
    events = [e for _, e in replay("timezone_offset.bin").events]
    ist = timezone(timedelta(hours=5, minutes=30))
    assert [e.created_at for e in events] == [
        datetime(2026, 11, 26, 8, 30, 32, tzinfo=ist),
        datetime(2026, 11, 26, 8, 30, 32, 250000, tzinfo=ist),
    ]
    assert events[0].created_at == datetime(2026, 11, 26, 3, 0, 32, tzinfo=UTC)
    assert b'"created_at":"2026-11-26T08:30:32.250000+05:30"' in events[1].to_json_bytes()


def test_transaction_on_other_table_never_arrives() -> None:
    # PostgreSQL 15 skips transactions with nothing published: only ours is there.
    r = replay("other_table_then_event.bin")
    assert len(r.commits) == 1
    assert [e.event_type for _, e in r.events] == ["after.other"]


@pytest.mark.parametrize(
    "name",
    ["multi_row_insert.bin", "copy.bin", "unicode.bin", "large_jsonb.bin.gz",
     "null_idempotency_key.bin", "timezone_offset.bin", "other_table_then_event.bin"],
)  # fmt: skip
def test_tracker_flushes_to_end_lsn_only_after_every_ack(name: str) -> None:
    r = replay(name)
    assert r.keepalives >= 1
    (_, end_lsn, _) = r.commits[-1]
    before = r.tracker.flushable()
    assert before < r.commits[0][0]  # the keepalive came before the data
    positions = [p for p, _ in r.events]
    for p in reversed(positions[1:]):  # out of order, first one held back
        r.tracker.ack(p)
    assert r.tracker.flushable() == before
    r.tracker.ack(positions[0])
    assert r.tracker.flushable() == end_lsn
