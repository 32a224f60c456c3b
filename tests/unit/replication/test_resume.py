"""Resume positions and the resume filter (replication.resume), without services."""

from __future__ import annotations

import random

from replication.lsn import LSN, Position
from replication.partitioner import partition_for
from replication.resume import ResumeFilter, position_from_headers, resume_positions

PARTITIONS = 4


def pos(lsn: int, idx: int = 0) -> Position:
    return Position(LSN(lsn), idx)


def key_in(partition: int, n: int = 0) -> bytes:
    """The n-th key (of the form stream-<i>) that lands in ``partition``."""
    found = [
        k
        for k in (f"stream-{i}".encode() for i in range(1000))
        if partition_for(k, PARTITIONS) == partition
    ]
    return found[n]


class Recorder:
    def __init__(self) -> None:
        self.forwarded: list[Position] = []
        self.dropped: list[Position] = []
        self.passed = 0

    def forward(self, p: Position, key: bytes, value: bytes, headers: object) -> None:
        self.forwarded.append(p)

    def drop(self, p: Position) -> None:
        self.dropped.append(p)

    def on_passed(self) -> None:
        self.passed += 1


def make(resume: list[Position | None]) -> tuple[ResumeFilter, Recorder]:
    rec = Recorder()
    return ResumeFilter(resume, rec.forward, rec.drop, rec.on_passed), rec


def test_headers_give_the_position() -> None:
    headers = [("commit_lsn", b"16/B374D848"), ("idx", b"2"), ("xid", b"7")]
    assert position_from_headers(headers) == Position(LSN.parse("16/B374D848"), 2)
    assert position_from_headers([("idx", b"2")]) is None
    assert position_from_headers([("commit_lsn", b"nope"), ("idx", b"2")]) is None
    assert position_from_headers([("commit_lsn", b"0/1"), ("idx", b"-1")]) is None


def test_snapshot_rows_and_empty_partitions_give_no_resume_position() -> None:
    last = {0: pos(0, 41), 1: None, 2: pos(0x200, 1)}
    assert resume_positions(last, PARTITIONS) == [None, None, pos(0x200, 1), None]


def test_each_partition_drops_what_it_holds_and_forwards_the_rest() -> None:
    # Partition 0 holds up to 0x100#1, partition 1 up to 0x300#0, the others nothing.
    f, rec = make([pos(0x100, 1), pos(0x300, 0), None, None])
    a, b, c = key_in(0), key_in(1), key_in(2)
    events = [
        (pos(0x100, 0), a),  # in partition 0: held -> dropped
        (pos(0x100, 1), a),  # the last one partition 0 holds -> dropped
        (pos(0x100, 2), a),  # the previous reader wrote no more of that txn -> forwarded
        (pos(0x100, 3), b),  # partition 1 holds up to 0x300 -> dropped
        (pos(0x200, 0), c),  # partition 2 holds nothing -> forwarded
        (pos(0x300, 0), b),  # dropped
        (pos(0x300, 1), a),  # forwarded
    ]
    for p, key in events:
        f(p, key, b"{}", [])
    assert rec.dropped == [pos(0x100, 0), pos(0x100, 1), pos(0x100, 3), pos(0x300, 0)]
    assert rec.forwarded == [pos(0x100, 2), pos(0x200, 0), pos(0x300, 1)]
    assert f.dropped == 4
    assert rec.passed == 1  # at 0x300#1, the first event after every resume position


def test_passed_is_called_once_at_the_first_event_after_every_resume_position() -> None:
    f, rec = make([pos(0x100, 0), None, pos(0x200, 5), None])
    assert f.horizon == pos(0x200, 5)
    f(pos(0x200, 5), key_in(2), b"", [])
    assert rec.passed == 0 and rec.dropped == [pos(0x200, 5)]
    f(pos(0x200, 6), key_in(2), b"", [])
    f(pos(0x300, 0), key_in(0), b"", [])
    assert rec.passed == 1
    assert rec.forwarded == [pos(0x200, 6), pos(0x300, 0)]


def test_nothing_to_resume_forwards_everything() -> None:
    f, rec = make([None] * PARTITIONS)
    assert f.horizon is None
    f(pos(0x10, 0), key_in(0), b"", [])
    assert rec.forwarded == [pos(0x10, 0)] and rec.passed == 1


def test_each_event_once_across_restarts_of_a_simulated_reader() -> None:
    """A stream of 200 events over 4 partitions; a 'reader' writes a random prefix of each
    partition (what was committed before it died) and restarts from the slot's confirmed
    position, which is before all of it. After several restarts every partition holds
    each of its events once, in order."""
    rng = random.Random(7)
    stream = [
        (pos(0x100 + t, i), key_in(rng.randrange(PARTITIONS), rng.randrange(3)))
        for t in range(50)
        for i in range(4)
    ]
    topic: dict[int, list[Position]] = {p: [] for p in range(PARTITIONS)}
    confirmed = 0  # index into stream: what the slot will resend from
    for _restart in range(6):
        last = {p: (topic[p][-1] if topic[p] else None) for p in topic}
        resume = resume_positions(last, PARTITIONS)
        rec = Recorder()
        f = ResumeFilter(resume, rec.forward, rec.drop, rec.on_passed)
        keys = dict(stream)
        for p, key in stream[confirmed:]:
            f(p, key, b"", [])
        # The crash: each partition got a prefix of what was sent to it.
        for part in range(PARTITIONS):
            mine = [p for p in rec.forwarded if partition_for(keys[p], PARTITIONS) == part]
            topic[part].extend(mine[: rng.randrange(len(mine) + 1)])
        # The slot confirms at most up to the first event Kafka does not hold.
        held = {p for part in topic.values() for p in part}
        safe = next((i for i, (p, _) in enumerate(stream) if p not in held), len(stream))
        confirmed = rng.randrange(confirmed, max(confirmed, safe) + 1)
    # A last run that completes.
    last = {p: (topic[p][-1] if topic[p] else None) for p in topic}
    final = ResumeFilter(
        resume_positions(last, PARTITIONS),
        lambda p, key, v, h: topic[partition_for(key, PARTITIONS)].append(p),
        lambda p: None,
        lambda: None,
    )
    for p, key in stream[confirmed:]:
        final(p, key, b"", [])
    for part in range(PARTITIONS):
        expected = [p for p, key in stream if partition_for(key, PARTITIONS) == part]
        assert topic[part] == expected
