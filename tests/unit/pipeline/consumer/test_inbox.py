"""consumer.inbox: a fetch handed over whole, with Faust's read-offset and gap bookkeeping
(no services: a scripted stand-in for Faust's consumer)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP, Message

from pipeline.consumer.inbox import Inbox, drain_in_batches

TOPIC = "domain-events"
P0 = TP(TOPIC, 0)
P1 = TP(TOPIC, 1)
OTHER = TP("elsewhere", 0)


@dataclass
class _Record:
    offset: int


class _Consumer:
    """What drain_in_batches uses of Faust's consumer, scripted fetch by fetch."""

    consumer_stopped_errors = (ConnectionError,)

    def __init__(self, fetches: list[tuple[dict[TP, list[_Record]], set[TP] | None]]) -> None:
        self.fetches = list(fetches)
        self.app = SimpleNamespace(
            topics=SimpleNamespace(acks_enabled_for=lambda topic: True),
            monitor=SimpleNamespace(track_tp_end_offset=lambda tp, offset: None),
            should_stop=False,
        )
        self._read_offset: defaultdict[TP, int | None] = defaultdict(lambda: None)
        self._commit_every: int | None = None
        self._n_acked = 0
        self._stopped = asyncio.Event()
        self._buffered_partitions: set[TP] = set()
        self.should_stop = False
        self.flow_active = True
        self.flow_after: list[bool] = []
        self.gaps: list[tuple[int, int, int]] = []
        self.via_conductor: list[tuple[str, int]] = []
        self.seeks = 0
        self.commits = 0

    async def _wait_next_records(self, timeout: float) -> tuple[Any, Any]:
        if self.flow_after:
            self.flow_active = self.flow_after.pop(0)
        if not self.fetches:
            self._stopped.set()
            return {}, None
        return self.fetches.pop(0)

    def _to_message(self, tp: TP, record: _Record) -> Message:
        return Message(tp.topic, tp.partition, record.offset, 0.0, 0, [], b"k", b"v", None, tp=tp)

    def highwater(self, tp: TP) -> int:
        return 0

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        self.gaps.append((tp.partition, offset_from, offset_to))

    async def callback(self, message: Message) -> None:
        self.via_conductor.append((message.topic, message.offset))

    async def perform_seek(self) -> None:
        self.seeks += 1

    async def commit(self) -> None:
        self.commits += 1


async def _drain(consumer: _Consumer, inbox: Inbox) -> list[tuple[int, int]]:
    await drain_in_batches(consumer, SimpleNamespace(_stopped=asyncio.Event()), inbox)
    taken: list[tuple[int, int]] = []
    while len(inbox):
        taken += [(m.partition, m.offset) for m in await inbox.take(1000)]
    return taken


def _records(*offsets: int) -> list[_Record]:
    return [_Record(o) for o in offsets]


async def test_a_fetch_is_handed_over_whole_in_partition_order() -> None:
    consumer = _Consumer(
        [({P0: _records(0, 1, 2), P1: _records(0, 1)}, {P0, P1}), ({P0: _records(3)}, {P0, P1})]
    )
    inbox = Inbox([TOPIC])
    assert await _drain(consumer, inbox) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (0, 3)]
    assert consumer.gaps == [] and consumer.via_conductor == []
    assert consumer._read_offset[P0] == 3 and consumer._read_offset[P1] == 1


async def test_offsets_without_a_record_are_gaps_as_faust_counts_them() -> None:
    """Transaction markers between records: the offsets between two records read are a gap
    (fetching._PromptConsumer._add_gap drops the record's own offset), including after a
    record at offset 0, which Faust's own loop misses; the first record read after a seek
    records none, as in Faust."""
    consumer = _Consumer(
        [({P0: _records(0, 2, 3, 7)}, None), ({P0: _records(9)}, None), ({P1: _records(5)}, None)]
    )
    inbox = Inbox([TOPIC])
    assert [o for _, o in await _drain(consumer, inbox)] == [0, 2, 3, 7, 9, 5]
    assert consumer.gaps == [(0, 1, 2), (0, 4, 7), (0, 8, 9)]


async def test_records_read_already_are_dropped() -> None:
    consumer = _Consumer([({P0: _records(4, 5)}, None), ({P0: _records(3, 5, 6)}, None)])
    inbox = Inbox([TOPIC])
    assert [o for _, o in await _drain(consumer, inbox)] == [4, 5, 5, 6]  # 5 >= last, as Faust


async def test_other_topics_and_inactive_partitions() -> None:
    consumer = _Consumer([({P0: _records(0), P1: _records(0), OTHER: _records(8)}, {P0, OTHER})])
    inbox = Inbox([TOPIC])
    assert await _drain(consumer, inbox) == [(0, 0)]  # P1 is not active: not read
    assert consumer.via_conductor == [("elsewhere", 8)]  # Faust's own delivery


async def test_a_fetch_while_the_flow_is_stopped_is_dropped_and_seeks_back() -> None:
    consumer = _Consumer([({P0: _records(0, 1)}, None), ({P0: _records(0, 1)}, None)])
    consumer.flow_after = [False, True]
    inbox = Inbox([TOPIC])
    assert await _drain(consumer, inbox) == [(0, 0), (0, 1)]
    assert consumer.seeks == 1


async def test_commit_every_is_honoured() -> None:
    consumer = _Consumer([({P0: _records(0)}, None)])
    consumer._commit_every = 10
    consumer._n_acked = 10
    await _drain(consumer, Inbox([TOPIC]))
    assert consumer.commits == 1 and consumer._n_acked == 0


async def test_take_returns_what_waits_up_to_max_and_put_waits_for_room() -> None:
    inbox = Inbox([TOPIC], max_records=3)
    waiting = asyncio.create_task(inbox.take(10))
    await asyncio.sleep(0)
    assert not waiting.done()  # nothing yet: take waits for the first message
    m = [Message(TOPIC, 0, o, 0.0, 0, [], b"k", b"v", None, tp=P0) for o in range(5)]
    await inbox.put(m[:1])
    assert [x.offset for x in await waiting] == [0]
    await inbox.put(m[1:4])  # three wait now: full
    blocked = asyncio.create_task(inbox.put(m[4:]))
    await asyncio.sleep(0)
    assert not blocked.done()
    assert [x.offset for x in await inbox.take(2)] == [1, 2]
    await asyncio.wait_for(blocked, 1)
    assert [x.offset for x in await inbox.take(10)] == [3, 4]
    with pytest.raises(ValueError):
        Inbox([TOPIC], max_records=0)
