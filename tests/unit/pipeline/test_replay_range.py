"""Issue 15 item 3: replay's safe start is the maximum over truncated partitions."""

from __future__ import annotations

from pipeline.replay_range import PartitionHead, find_hole, safe_start
from replication.lsn import LSN, Position


def head(
    partition: int, begin: int, lsn: str | None, idx: int = 0, end: int = 100
) -> PartitionHead:
    first = Position(LSN.parse(lsn), idx) if lsn is not None else None
    return PartitionHead(partition, begin, end, first)


def test_untruncated_partitions_allow_any_start() -> None:
    heads = [head(0, 0, "0/100"), head(1, 0, "0/50")]
    assert safe_start(heads) is None
    assert find_hole(heads, LSN.parse("0/0")) is None


def test_the_suggestion_is_the_maximum_over_truncated_partitions() -> None:
    heads = [head(0, 5, "0/200"), head(1, 3, "0/900"), head(2, 0, "0/10")]
    assert safe_start(heads) == LSN.parse("0/900")
    # The minimum (the old suggestion) leaves a hole in partition 1.
    hole = find_hole(heads, LSN.parse("0/200"))
    assert hole is not None and hole.partitions == (1,)
    assert "p1" in str(hole) and "--from-lsn 0/900" in str(hole)
    assert find_hole(heads, LSN.parse("0/900")) is None


def test_a_first_record_inside_a_transaction_moves_the_start_past_it() -> None:
    # idx 2: the transaction's first events may be among the deleted records.
    heads = [head(0, 7, "0/500", idx=2)]
    assert safe_start(heads) == LSN.parse("0/501")
    assert find_hole(heads, LSN.parse("0/500")) is not None
    assert find_hole(heads, LSN.parse("0/501")) is None


def test_an_emptied_partition_is_a_hole_for_every_range() -> None:
    heads = [head(0, 10, None, end=10), head(1, 0, "0/10")]
    hole = find_hole(heads, LSN.parse("FF/0"))
    assert hole is not None and hole.emptied == (0,)
    assert "every record of partition(s) p0 was deleted" in str(hole)
