"""Key -> partition: the same function as Kafka's default partitioner (DESIGN invariant 4)."""

from __future__ import annotations

import uuid

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from replication.partitioner import KeyPartitioner, murmur2, partition_for


@given(st.binary(max_size=200))
def test_murmur2_matches_aiokafka(data: bytes) -> None:
    assert murmur2(data) == aiokafka_murmur2(data)


# Values from the Java client's own test (UtilsTest.testMurmur2), as signed ints there.
@pytest.mark.parametrize(
    ("data", "java"),
    [
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_murmur2_matches_the_java_client(data: bytes, java: int) -> None:
    assert murmur2(data) == java & 0xFFFFFFFF


@given(st.binary(min_size=1, max_size=64), st.integers(min_value=1, max_value=64))
def test_partition_matches_aiokafka_default_partitioner(key: bytes, n: int) -> None:
    partitions = list(range(n))
    assert partition_for(key, n) == DefaultPartitioner()(key, partitions, partitions)


def test_cached_partitions_are_stable_across_evictions() -> None:
    part = KeyPartitioner(8, max_keys=10)
    keys = [str(uuid.uuid4()).encode() for _ in range(100)]
    first = [part(k) for k in keys]
    assert [part(k) for k in reversed(keys)] == first[::-1]
    assert first == [partition_for(k, 8) for k in keys]
    assert len(part._cache) <= 10


def test_partition_count_must_be_positive() -> None:
    with pytest.raises(ValueError):
        KeyPartitioner(0)
