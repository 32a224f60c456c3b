"""dispatch.py: records submitted stream by stream, streams concurrently, each in order.

Concurrency is observed without clocks: the handlers yield to the event loop a few times
and count how many of them are inside at once.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from pipeline.agents.dispatch import StreamDispatcher


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


@dataclass
class Acks:
    """done() callbacks: which records were done, in what order, with what error."""

    done: list[tuple[Rec, Exception | None]] = field(default_factory=list)

    def for_(self, rec: Rec):  # type: ignore[no-untyped-def]
        async def done(error: Exception | None) -> None:
            self.done.append((rec, error))

        return done

    async def until(self, count: int) -> None:
        """Wait until count records were done."""
        while len(self.done) < count:
            await asyncio.sleep(0)


async def submit_all(dispatcher: StreamDispatcher[Rec], batch: list[Rec]) -> Acks:
    """Submit every record of batch, as an agent does; return once each one was done."""
    acks = Acks()
    for rec in batch:
        await dispatcher.submit(rec, acks.for_(rec))
    await acks.until(len(batch))
    return acks


async def test_each_stream_in_order_streams_concurrently() -> None:
    batch = recs(*((k, s) for s in range(6) for k in (b"a", b"b", b"c")))
    probe = Probe()
    await submit_all(StreamDispatcher("t", probe, key_of), batch)

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

    await submit_all(StreamDispatcher("t", handle, key_of), batch)
    stream_a = [e for e in events if e[1].key == b"a"]
    assert stream_a == [(what, r) for r in batch if r.key == b"a" for what in ("start", "end")]


async def test_keyless_records_run_concurrently() -> None:
    probe = Probe()
    batch = recs((None, 0), (None, 1), (None, 2), (None, 3))
    await submit_all(StreamDispatcher("t", probe, key_of), batch)
    assert sorted(probe.finished, key=lambda r: r.seq) == batch
    assert probe.peak == 4


async def test_in_flight_handlers_are_bounded() -> None:
    probe = Probe()
    batch = recs(*((bytes([k]), k) for k in range(10)))
    await submit_all(StreamDispatcher("t", probe, key_of, max_in_flight=3), batch)
    assert len(probe.finished) == 10
    assert probe.peak == 3


async def test_the_bound_holds_across_concurrent_submitters() -> None:
    probe = Probe()
    dispatcher = StreamDispatcher("t", probe, key_of, max_in_flight=2)
    await asyncio.gather(
        submit_all(dispatcher, recs((b"a", 0), (b"b", 1), (b"c", 2))),
        submit_all(dispatcher, recs((b"d", 3), (b"e", 4))),
    )
    assert len(probe.finished) == 5
    assert probe.peak == 2


async def test_max_in_flight_of_one_is_the_sequential_loop() -> None:
    probe = Probe()
    batch = recs((b"a", 0), (b"b", 1), (None, 2), (b"a", 3))
    await submit_all(StreamDispatcher("t", probe, key_of, max_in_flight=1), batch)
    assert probe.peak == 1
    assert probe.finished == batch


def test_max_in_flight_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_in_flight"):
        StreamDispatcher("t", Probe(), key_of, max_in_flight=0)


async def test_a_failure_goes_to_done_and_every_other_record_is_handled() -> None:
    batch = recs((b"a", 0), (b"b", 1), (b"a", 2), (b"b", 3), (None, 4))
    probe = Probe(fail=frozenset({batch[0]}))
    acks = await submit_all(StreamDispatcher("t", probe, key_of), batch)
    # As Faust's one-at-a-time loop: the failed record is not retried, the rest are
    # handled, its own stream's later record too, in order.
    assert [r for r in probe.started if r.key == b"a"] == [batch[0], batch[2]]
    assert set(probe.finished) == set(batch) - {batch[0]}
    errors = {r.seq: e for r, e in acks.done}
    assert isinstance(errors.pop(0), Boom) and set(errors.values()) == {None}
    assert probe.in_flight == 0


async def test_records_the_agent_does_not_want_are_skipped_and_order_is_kept() -> None:
    probe = Probe()
    batch = recs((b"a", 0), (b"b", 1), (b"a", 2), (b"a", 3), (b"b", 4))
    dispatch = StreamDispatcher("t", probe, key_of, wants=lambda r: r.seq != 2)
    await submit_all(dispatch, batch)
    assert sorted(probe.finished, key=lambda r: r.seq) == [r for r in batch if r.seq != 2]
    assert [r.seq for r in probe.finished if r.key == b"a"] == [0, 3]

    nothing = Probe()
    acks = await submit_all(StreamDispatcher("t", nothing, key_of, wants=lambda r: False), batch)
    assert nothing.started == []
    assert [r for r, _ in acks.done] == batch  # done at once, so acked


async def test_submit_keeps_each_stream_in_order_and_does_not_wait_for_other_streams() -> None:
    gate = asyncio.Event()
    slow = Rec(b"slow", 0)

    async def handle(rec: Rec) -> None:
        if rec is slow:
            await gate.wait()
        for _ in range(10 - rec.seq % 10):
            await asyncio.sleep(0)

    acks = Acks()
    dispatcher = StreamDispatcher("t", handle, key_of)
    later = recs((b"a", 1), (b"b", 2), (b"a", 3), (b"slow", 4), (b"b", 5))
    for rec in [slow, *later]:
        await dispatcher.submit(rec, acks.for_(rec))
    for _ in range(100):
        await asyncio.sleep(0)
    # Every other stream is done while the slow record still waits; the slow stream's
    # next record waits behind it.
    assert sorted((r for r, _ in acks.done), key=lambda r: r.seq) == [
        r for r in later if r.key != b"slow"
    ]
    assert [r.seq for r, _ in acks.done if r.key == b"a"] == [1, 3]
    assert [r.seq for r, _ in acks.done if r.key == b"b"] == [2, 5]
    gate.set()
    await acks.until(len(later) + 1)
    assert [r for r, _ in acks.done][-2:] == [slow, later[3]]


async def test_submit_waits_while_max_in_flight_are_unfinished() -> None:
    gate = asyncio.Event()

    async def handle(rec: Rec) -> None:
        await gate.wait()

    acks = Acks()
    dispatcher = StreamDispatcher("t", handle, key_of, max_in_flight=2)
    for rec in recs((b"a", 0), (b"b", 1)):
        await dispatcher.submit(rec, acks.for_(rec))
    third = asyncio.create_task(dispatcher.submit(Rec(b"c", 2), acks.for_(Rec(b"c", 2))))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not third.done()  # backpressure on the agent's loop
    gate.set()
    await third
    await acks.until(3)
    assert len(acks.done) == 3


async def test_submit_hands_a_failure_to_done_and_skips_what_is_not_wanted() -> None:
    batch = recs((b"a", 0), (b"a", 1), (b"b", 2))
    probe = Probe(fail=frozenset({batch[0]}))
    acks = Acks()
    dispatcher = StreamDispatcher("t", probe, key_of, wants=lambda r: r.seq != 2)
    for rec in batch:
        await dispatcher.submit(rec, acks.for_(rec))
    await acks.until(len(batch))
    assert (batch[2], None) in acks.done and batch[2] not in probe.started
    errors = {r.seq: e for r, e in acks.done}
    assert isinstance(errors[0], Boom) and errors[1] is None
    assert probe.finished == [batch[1]]  # its stream went on after the failure


async def test_cancel_stops_what_is_in_flight_and_never_calls_done_for_it() -> None:
    gate = asyncio.Event()
    probe = Probe(gate=gate)
    acks = Acks()
    dispatcher = StreamDispatcher("t", probe, key_of)
    batch = recs((b"a", 0), (b"a", 1), (b"b", 2), (None, 3))
    for rec in batch:
        await dispatcher.submit(rec, acks.for_(rec))
    for _ in range(20):
        await asyncio.sleep(0)
    assert probe.in_flight == 3  # a's first record, b's, the keyless one
    await dispatcher.cancel()
    assert acks.done == []  # nothing acked: all of it is delivered again
    assert probe.in_flight == 0
    assert probe.cancelled == 3
    assert batch[1] not in probe.started
    assert probe.finished == []


async def test_max_waiting_lets_submit_go_on_while_handlers_stay_bounded() -> None:
    """The edge keeps feeding the projection while starts wait out an outage: submit
    returns for up to max_waiting unfinished records, only max_in_flight handle at once,
    and a stream's records still run one after the other."""
    gate = asyncio.Event()
    running: list[int] = []
    peak = 0

    async def handle(record: Rec) -> None:
        nonlocal peak
        running.append(record.seq)
        peak = max(peak, len(running))
        await gate.wait()
        running.remove(record.seq)

    dispatcher = StreamDispatcher("t", handle, key_of, max_in_flight=2, max_waiting=5)
    done: list[int] = []

    def finished(seq: int):  # type: ignore[no-untyped-def]
        async def go(error: Exception | None) -> None:
            done.append(seq)

        return go

    batch = recs((b"a", 0), (b"a", 1), (b"b", 2), (b"c", 3), (b"d", 4), (b"e", 5))
    for r in batch[:5]:
        await asyncio.wait_for(dispatcher.submit(r, finished(r.seq)), 1)  # never waits
    blocked = asyncio.create_task(dispatcher.submit(batch[5], finished(5)))
    await asyncio.sleep(0.01)
    assert not blocked.done()  # five submitted and unfinished: the sixth waits
    assert peak == 2 and 1 not in running  # two handle at once; a's second waits for 0
    gate.set()
    await asyncio.wait_for(blocked, 1)
    while len(done) < 6:
        await asyncio.sleep(0.01)
    assert done.index(0) < done.index(1)
    assert peak == 2
    with pytest.raises(ValueError, match="max_waiting"):
        StreamDispatcher("t", handle, key_of, max_in_flight=3, max_waiting=2)
