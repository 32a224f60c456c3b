"""The reader child's figures as the parent sees them, and how the parent follows its end."""

from __future__ import annotations

import mmap
import os
import signal
import struct

import pytest

from pipeline import reader_process as rp
from replication.lsn import LSN
from replication.reader_config import ReaderStats


def _stats() -> ReaderStats:
    return ReaderStats(
        active=True,
        events_read=7,
        events_acked=6,
        dead_lettered=1,
        dead_letters_unsent=2,
        snapshot_rows=3,
        transactions=5,
        confirmed_lsn=LSN(0x1_0000_0010),
        server_wal_end=LSN(2**64 - 1),
        sessions=4,
        waiting_for_slot_pid=4242,
        pending_transactions=9,
    )


def test_pack_then_unpack_gives_every_field_back() -> None:
    copy = ReaderStats()
    rp.unpack(rp.pack(_stats()), copy)
    assert copy == _stats()


def test_no_waiting_pid_and_inactive_survive_the_round_trip() -> None:
    copy = _stats()
    rp.unpack(rp.pack(ReaderStats()), copy)
    assert copy == ReaderStats()
    assert copy.waiting_for_slot_pid is None and copy.active is False


def test_the_block_carries_the_last_write() -> None:
    memory = mmap.mmap(-1, rp.SIZE)
    writer, reader = rp.StatsBlock(memory), rp.StatsBlock(memory)
    seen = ReaderStats()
    assert reader.read(seen) and seen == ReaderStats()  # all zeros: nothing written yet
    writer.write(_stats())
    assert reader.read(seen) and seen == _stats()
    later = _stats()
    later.events_read = 1_000_000
    writer.write(later)
    assert reader.read(seen) and seen.events_read == 1_000_000


def test_a_write_in_progress_is_never_read() -> None:
    memory = mmap.mmap(-1, rp.SIZE)
    rp.StatsBlock(memory).write(_stats())
    struct.pack_into("<Q", memory, 0, 3)  # odd: the writer is between its two steps
    seen = ReaderStats()
    assert not rp.StatsBlock(memory).read(seen)
    assert seen == ReaderStats()  # left as it was


def test_a_reader_that_stopped_stops_the_parent_gracefully() -> None:
    sent: list[tuple[int, int]] = []
    rp.follow(0, 123, kill=lambda pid, sig: sent.append((pid, sig)), flush_logs=lambda: None)
    assert sent == [(os.getpid(), signal.SIGTERM)]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSEGV])
def test_a_reader_killed_by_a_signal_takes_the_parent_with_it(sig: signal.Signals) -> None:
    sent: list[tuple[int, int]] = []
    previous = signal.getsignal(sig)
    try:
        rp.follow(-sig, 123, kill=lambda pid, s: sent.append((pid, s)), flush_logs=lambda: None)
    finally:
        if sig != signal.SIGKILL:
            signal.signal(sig, previous)
    assert sent == [(os.getpid(), sig)]
