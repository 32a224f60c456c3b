"""dispatch.py: a batch grouped by stream, streams concurrently, each stream in order.

Concurrency is observed without clocks: the handlers yield to the event loop a few times
and count how many of them are inside at once.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import pytest

from pipeline.agents.dispatch import StreamDispatcher, group_by_key


@dataclass(frozen=True)
class Rec:
    key: bytes | None
    seq: int


def recs(*spec: tuple[bytes | None, int]) -> list[Rec]:
    return [Rec(k, s) for k, s in spec]


def key_of(rec: Rec) -> bytes | None:
    return rec.key


class Boom(Exception):
    pass


@dataclass
class Probe:
    """A handler that yields to the loop, recording starts, ends and peak concurrency."""

    yields: int = 3
    fail: frozenset[Rec] = frozenset()
    started: list[Rec] = field(default_factory=list)
    finished: list[Rec] = field(default_factory=list)
    in_flight: int = 0
    peak: int = 0
    gate: asyncio.Event | None = None
    cancelled: int = 0

    async def __call__(self, rec: Rec) -> None:
        self.started.append(rec)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            # Earlier records yield longer: run concurrently, they would finish last.
            for _ in range(self.yields * (10 - rec.seq % 10)):
                await asyncio.sleep(0)
            if rec in self.fail:
                raise Boom(f"record {rec}")
            self.finished.append(rec)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1


def test_group_by_key_keeps_order_and_isolates_keyless() -> None:
    batch = recs((b"a", 0), (b"b", 1), (None, 2), (b"a", 3), (None, 4), (b"b", 5), (b"c", 6))
    groups = group_by_key(batch, key_of)
    assert [[i for i, _ in g] for g in groups] == [[0, 3], [1, 5], [2], [4], [6]]
    assert [r for _, r in groups[0]] == [batch[0], batch[3]]


def test_group_by_key_of_an_empty_batch() -> None:
    assert group_by_key([], key_of) == []


async def test_each_stream_in_order_streams_concurrently() -> None:
    batch = recs(*((k, s) for s in range(6) for k in (b"a", b"b", b"c")))
    probe = Probe()
    await StreamDispatcher("t", probe, key_of)(batch)

    assert sorted(probe.finished, key=lambda r: r.seq) == sorted(batch, key=lambda r: r.seq)
    for k in (b"a", b"b", b"c"):
        mine = [r for r in batch if r.key == k]
        assert [r for r in probe.started if r.key == k] == mine
        assert [r for r in probe.finished if r.key == k] == mine
    # One stream at a time would never have two handlers inside at once.
    assert probe.peak == 3


async def test_a_record_starts_only_after_the_one_before_it_in_its_stream_finished() -> None:
    batch = recs((b"a", 0), (b"a", 1), (b"b", 2), (b"a", 3))
    events: list[tuple[str, Rec]] = []

    async def handle(rec: Rec) -> None:
        events.append(("start", rec))
        for _ in range(5):
            await asyncio.sleep(0)
        events.append(("end", rec))

    await StreamDispatcher("t", handle, key_of)(batch)
    stream_a = [e for e in events if e[1].key == b"a"]
    assert stream_a == [(what, r) for r in batch if r.key == b"a" for what in ("start", "end")]


async def test_keyless_records_run_concurrently() -> None:
    probe = Probe()
    batch = recs((None, 0), (None, 1), (None, 2), (None, 3))
    await StreamDispatcher("t", probe, key_of)(batch)
    assert sorted(probe.finished, key=lambda r: r.seq) == batch
    assert probe.peak == 4


async def test_in_flight_handlers_are_bounded() -> None:
    probe = Probe()
    batch = recs(*((bytes([k]), k) for k in range(10)))
    dispatcher = StreamDispatcher("t", probe, key_of, max_in_flight=3)
    await dispatcher(batch)
    assert len(probe.finished) == 10
    assert probe.peak == 3


async def test_the_bound_holds_across_concurrent_batches() -> None:
    probe = Probe()
    dispatcher = StreamDispatcher("t", probe, key_of, max_in_flight=2)
    await asyncio.gather(
        dispatcher(recs((b"a", 0), (b"b", 1), (b"c", 2))),
        dispatcher(recs((b"d", 3), (b"e", 4))),
    )
    assert len(probe.finished) == 5
    assert probe.peak == 2


async def test_max_in_flight_of_one_is_the_sequential_loop() -> None:
    probe = Probe()
    batch = recs((b"a", 0), (b"b", 1), (None, 2), (b"a", 3))
    await StreamDispatcher("t", probe, key_of, max_in_flight=1)(batch)
    assert probe.peak == 1
    assert sorted(probe.finished, key=lambda r: r.seq) == batch


def test_max_in_flight_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_in_flight"):
        StreamDispatcher("t", Probe(), key_of, max_in_flight=0)


async def test_a_failure_is_raised_after_every_other_record_was_handled() -> None:
    batch = recs((b"a", 0), (b"b", 1), (b"a", 2), (b"b", 3), (None, 4))
    probe = Probe(fail=frozenset({batch[0]}))
    with pytest.raises(Boom, match="seq=0"):
        await StreamDispatcher("t", probe, key_of)(batch)
    # As Faust's one-at-a-time loop: the failed record is not retried, the rest are
    # handled, its own stream's later record too, in order.
    assert [r for r in probe.started if r.key == b"a"] == [batch[0], batch[2]]
    assert set(probe.finished) == set(batch) - {batch[0]}
    assert probe.in_flight == 0


async def test_the_first_failure_in_batch_order_is_raised_the_others_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    batch = recs((b"a", 0), (b"b", 1), (b"c", 2))
    # c's record fails first in time (it yields least), a's is first in the batch.
    probe = Probe(fail=frozenset({batch[0], batch[2]}))
    with (
        caplog.at_level(logging.ERROR, logger="pipeline.agents.dispatch"),
        pytest.raises(Boom, match="seq=0"),
    ):
        await StreamDispatcher("starter", probe, key_of)(batch)
    assert probe.finished == [batch[1]]
    (logged,) = caplog.records
    assert "starter" in logged.getMessage()
    assert logged.exc_info is not None and "seq=2" in str(logged.exc_info[1])


async def test_cancelling_a_batch_stops_every_group_before_returning() -> None:
    gate = asyncio.Event()
    probe = Probe(gate=gate)
    batch = recs((b"a", 0), (b"a", 1), (b"b", 2), (None, 3))
    task = asyncio.create_task(StreamDispatcher("t", probe, key_of)(batch))
    for _ in range(20):
        await asyncio.sleep(0)
    assert probe.in_flight == 3  # a's first record, b's, the keyless one
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert probe.in_flight == 0
    assert probe.cancelled == 3
    assert batch[1] not in probe.started
    assert probe.finished == []
