"""Flush tracker: DESIGN invariant 2 (flush only what Kafka has acked; never backwards)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replication.errors import TrackerError
from replication.lsn import LSN, Position
from replication.tracker import FlushTracker


def lsn(n: int) -> LSN:
    return LSN(n)


def pos(commit: int, idx: int) -> Position:
    return Position(LSN(commit), idx)


def test_nothing_registered_reports_start() -> None:
    assert FlushTracker().flushable() == LSN.ZERO
    assert FlushTracker(start=lsn(500)).flushable() == lsn(500)


def test_flush_is_end_lsn_of_fully_acked_transaction() -> None:
    t = FlushTracker()
    t.register_at(100, 130, 3)
    t.ack(pos(100, 0))
    t.ack(pos(100, 1))
    assert t.flushable() == LSN.ZERO  # one ack held back: flush stays put
    t.ack(pos(100, 2))
    assert t.flushable() == lsn(130)  # the end LSN, not the commit LSN
    assert t.pending_transactions == 0


def test_held_back_ack_blocks_later_transactions() -> None:
    t = FlushTracker()
    t.register_at(100, 130, 2)
    t.register_at(200, 230, 1)
    t.register_at(300, 330, 1)
    t.ack(pos(200, 0))
    t.ack(pos(300, 0))
    t.ack(pos(100, 1))
    assert t.flushable() == LSN.ZERO  # pos(100, 0) still in flight
    t.ack(pos(100, 0))
    assert t.flushable() == lsn(330)


def test_out_of_order_acks_across_partitions() -> None:
    t = FlushTracker()
    t.register_at(100, 130, 3)
    t.register_at(200, 230, 2)
    for p in [pos(200, 1), pos(100, 2), pos(200, 0), pos(100, 0)]:
        t.ack(p)
        assert t.flushable() == LSN.ZERO
    t.ack(pos(100, 1))
    assert t.flushable() == lsn(230)


def test_partial_prefix_advances_only_to_its_end() -> None:
    t = FlushTracker()
    t.register_at(100, 130, 1)
    t.register_at(200, 230, 1)
    t.ack(pos(100, 0))
    assert t.flushable() == lsn(130)
    t.ack(pos(200, 0))
    assert t.flushable() == lsn(230)


def test_zero_event_transaction_flushes_after_predecessors() -> None:
    t = FlushTracker()
    t.register_at(100, 130, 1)
    t.register_at(200, 230, 0)
    assert t.flushable() == LSN.ZERO
    t.ack(pos(100, 0))
    assert t.flushable() == lsn(230)
    t.register_at(300, 330, 0)
    assert t.flushable() == lsn(330)


def test_keepalive_advances_only_when_idle() -> None:
    t = FlushTracker()
    t.note_keepalive(lsn(50))
    assert t.flushable() == lsn(50)  # idle publication does not pin WAL
    t.register_at(100, 130, 1)
    t.note_keepalive(lsn(500))
    assert t.flushable() == lsn(50)  # in flight: keepalive must not advance
    t.ack(pos(100, 0))
    assert t.flushable() == lsn(130)
    t.note_keepalive(lsn(500))
    assert t.flushable() == lsn(500)


def test_keepalive_ignored_while_transaction_open() -> None:
    t = FlushTracker()
    t.begin_at(100)
    t.note_keepalive(lsn(90))
    assert t.flushable() == LSN.ZERO
    t.ack(pos(100, 0))  # ack may beat the Commit when produced while streaming in
    t.register_at(100, 130, 1)
    assert t.flushable() == lsn(130)


def test_never_backwards() -> None:
    t = FlushTracker(start=lsn(1000))
    t.note_keepalive(lsn(900))
    assert t.flushable() == lsn(1000)
    t.register_at(950, 980, 1)  # e.g. a resend below the confirmed position
    t.ack(pos(950, 0))
    assert t.flushable() == lsn(1000)
    t.note_keepalive(lsn(2000))
    assert t.flushable() == lsn(2000)
    t.note_keepalive(lsn(1500))
    assert t.flushable() == lsn(2000)
    assert t.flushed == lsn(2000)


def test_misuse_is_an_error() -> None:
    t = FlushTracker()
    t.register_at(100, 130, 2)
    with pytest.raises(TrackerError, match="no pending transaction"):
        t.ack(pos(999, 0))
    with pytest.raises(TrackerError, match="beyond"):
        t.ack(pos(100, 2))
    t.ack(pos(100, 0))
    with pytest.raises(TrackerError, match="duplicate ack"):
        t.ack(pos(100, 0))  # a duplicate must not complete the transaction early
    with pytest.raises(TrackerError, match="commit order"):
        t.register_at(50, 60, 1)
    with pytest.raises(TrackerError, match="registered twice"):
        t.register_at(100, 130, 2)
    with pytest.raises(TrackerError, match="not after"):
        t.register_at(300, 300, 1)
    with pytest.raises(TrackerError, match="negative"):
        t.register_at(300, 330, -1)
    t.ack(pos(100, 1))
    assert t.flushable() == lsn(130)
    with pytest.raises(TrackerError, match="already flushed"):
        t.ack(pos(100, 1))


def test_register_checks_early_acks_and_open_order() -> None:
    t = FlushTracker()
    t.begin_at(100)
    t.ack(pos(100, 5))
    with pytest.raises(TrackerError, match="idx 5 was already reported"):
        t.register_at(100, 130, 3)
    t2 = FlushTracker()
    t2.begin_at(100)
    t2.begin_at(200)
    with pytest.raises(TrackerError, match="after a later Begin"):
        t2.register_at(100, 130, 1)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[int], list[Position]]:
    counts = draw(st.lists(st.integers(min_value=0, max_value=4), min_size=1, max_size=8))
    acks = [pos((i + 1) * 100, j) for i, n in enumerate(counts) for j in range(n)]
    return counts, draw(st.permutations(acks))


@given(scenarios(), st.integers(min_value=0, max_value=20))
def test_flush_matches_model_under_any_ack_order(
    scenario: tuple[list[int], list[Position]], held: int
) -> None:
    """Against a brute-force model: flush = end of the longest fully-acked prefix."""
    counts, acks = scenario
    held_back = acks[held] if held < len(acks) else None
    t = FlushTracker()
    for i, n in enumerate(counts):
        t.register_at((i + 1) * 100, (i + 1) * 100 + 30, n)
    done: set[Position] = set()
    previous = LSN.ZERO
    for p in acks:
        if p == held_back:
            continue
        t.ack(p)
        done.add(p)
        expected = LSN.ZERO
        for i, n in enumerate(counts):
            if all(pos((i + 1) * 100, j) in done for j in range(n)):
                expected = lsn((i + 1) * 100 + 30)
            else:
                break
        got = t.flushable()
        assert got == expected
        assert got >= previous
        previous = got
        if held_back is not None:
            assert got < held_back.commit_lsn  # never past an unacked event


def test_ack_streamed_skips_snapshot_positions() -> None:
    t = FlushTracker()
    t.register_at(100, 130, 2)
    t.ack_streamed([pos(0, 0), pos(100, 0), pos(0, 1), pos(100, 1)])
    assert t.flushable() == lsn(130)
    with pytest.raises(TrackerError, match="no pending transaction"):
        t.ack_streamed([pos(100, 1)])  # flushed already: a duplicate report
