"""Where a restarted reader resumes in Kafka: each event once in the topic (DESIGN invariant 8).

The slot resends every transaction after its confirmed flush LSN, and Kafka may hold some
of them already: the previous reader wrote them and died before the slot confirmed them.
On session start the reader reads the last committed record of each partition of the topic;
its ``commit_lsn``/``idx`` headers are the :class:`~replication.lsn.Position` of the last
event that partition holds. A partition's events are in commit order (one producer, one
batch at a time, in the order the reader added them), so every resent event of that
partition at or before that position is already there, and every later one is not:
:class:`ResumeFilter` drops the first and hands on the rest.

This is exact only if no earlier reader can still append to the topic after the
positions were read: the transactional producer (:mod:`replication.producer`) fences the
previous reader before the positions are read, and they are read with
``isolation_level=read_committed``, so what an aborted transaction left is not counted.

Cost: the filter is the producer's ``add`` only until the stream has passed the highest
resume position; from there on the reader hands events to the batcher directly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition

from replication.errors import LSNParseError
from replication.lsn import LSN, Position
from replication.partitioner import KeyPartitioner

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]
Add = Callable[[Position, bytes, bytes, Headers], None]


def position_from_headers(headers: Sequence[tuple[str, bytes]]) -> Position | None:
    """The position a record's ``commit_lsn``/``idx`` headers give; None without them."""
    commit_lsn: bytes | None = None
    idx: bytes | None = None
    for name, value in headers:
        if name == "commit_lsn":
            commit_lsn = value
        elif name == "idx":
            idx = value
    if commit_lsn is None or idx is None:
        return None
    try:
        return Position(LSN.parse(commit_lsn.decode()), int(idx))
    except (LSNParseError, UnicodeDecodeError, ValueError):
        return None


def resume_positions(last: Mapping[int, Position | None], partitions: int) -> list[Position | None]:
    """One entry per partition: the last position it holds, None if it holds nothing of
    the stream. Snapshot rows (commit LSN 0/0) say nothing about the stream: None."""
    out: list[Position | None] = []
    for p in range(partitions):
        pos = last.get(p)
        out.append(pos if pos is not None and pos.commit_lsn.value != 0 else None)
    return out


class ResumeFilter:
    """The producer's ``add`` while the resent stream is behind what Kafka holds.

    ``forward`` is the batcher's ``add``; ``drop(position)`` reports a dropped event as
    delivered (the slot may then confirm it); ``passed()`` is called once, at the first
    event after every resume position; from then on every event is forwarded without a
    look at it (the stream comes in order: nothing after that event is in Kafka).
    """

    __slots__ = (
        "_drop",
        "_forward",
        "_horizon",
        "_partition",
        "_passed",
        "_resume",
        "_through",
        "dropped",
    )

    def __init__(
        self,
        resume: Sequence[Position | None],
        forward: Add,
        drop: Callable[[Position], None],
        passed: Callable[[], None],
    ) -> None:
        self._resume = list(resume)
        self._partition = KeyPartitioner(len(self._resume))
        self._forward = forward
        self._drop = drop
        self._passed: Callable[[], None] | None = passed
        known = [pos for pos in self._resume if pos is not None]
        self._horizon = max(known) if known else None
        self._through = False
        self.dropped = 0

    @property
    def horizon(self) -> Position | None:
        """The highest resume position: events after it are all new to Kafka."""
        return self._horizon

    def __call__(self, position: Position, key: bytes, value: bytes, headers: Headers) -> None:
        if self._through:
            self._forward(position, key, value, headers)
            return
        horizon = self._horizon
        if horizon is None or position > horizon:
            self._through = True
            if self._passed is not None:
                passed, self._passed = self._passed, None
                passed()
            self._forward(position, key, value, headers)
            return
        last = self._resume[self._partition(key)]
        if last is not None and position <= last:
            self.dropped += 1
            self._drop(position)
            return
        self._forward(position, key, value, headers)


async def read_last_positions(
    consumer: AIOKafkaConsumer, topic: str, partitions: int
) -> dict[int, Position | None]:
    """The position of the last record of each partition the consumer can read.

    ``consumer`` is started, with ``isolation_level="read_committed"``: its end offset is
    the last stable offset, and records of aborted transactions are skipped. Reads back
    from the end in growing steps until a record with a position turns up (the last
    offsets may be transaction markers or aborted records).
    """
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    begins = await consumer.beginning_offsets(tps)
    ends = await consumer.end_offsets(tps)
    out: dict[int, Position | None] = {}
    for tp in tps:
        consumer.assign([tp])  # one at a time: fetches for this partition only
        out[tp.partition] = await _last_in(consumer, tp, begins[tp], ends[tp])
    return out


async def _last_in(
    consumer: AIOKafkaConsumer, tp: TopicPartition, begin: int, end: int
) -> Position | None:
    step = 16
    upper = end
    while upper > begin:
        start = max(begin, upper - step)
        consumer.seek(tp, start)
        found: Position | None = None
        while await consumer.position(tp) < upper:
            # Short: a fetch of only aborted records returns nothing, having moved on.
            batch = await consumer.getmany(tp, timeout_ms=100)
            for record in batch.get(tp, []):
                if record.offset >= upper:
                    break
                pos = position_from_headers(record.headers)
                if pos is not None:
                    found = pos
        if found is not None:
            return found
        upper = start
        step *= 4
    return None
