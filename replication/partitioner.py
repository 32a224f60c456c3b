"""Key -> partition, exactly as Kafka's default partitioner computes it (DESIGN invariant 4).

Java's ``DefaultPartitioner`` (and aiokafka's, and librdkafka's ``murmur2_random``):
``(murmur2(key) & 0x7fffffff) % partition_count``. Keeping that function means a
stream_id lands where any other client would put it, and where this reader put it before.

aiokafka's ``murmur2`` reads one byte at a time in Python; here the 4-byte words come
out of one ``struct.unpack_from`` call, which is faster for a 36-byte uuid key
(docs/benchmarks.md, "Figures the code used to quote"), and a bounded dict remembers
recent keys (streams are written in bursts).
tests/unit/replication/test_partitioner.py checks the result against aiokafka's implementation.
"""

from __future__ import annotations

import struct
from typing import Final

_M: Final = 0x5BD1E995
_SEED: Final = 0x9747B28C
_MASK: Final = 0xFFFFFFFF

_WORDS: dict[int, struct.Struct] = {}


def _words(n: int) -> struct.Struct:
    st = _WORDS.get(n)
    if st is None:
        st = _WORDS[n] = struct.Struct(f"<{n}I")
    return st


def murmur2(data: bytes) -> int:
    """Kafka's 32-bit MurmurHash2 of ``data`` (``org.apache.kafka.common.utils.Utils``)."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    nwords = length >> 2
    for word in _words(nwords).unpack_from(data):
        k = (word * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = length & 3
    if tail:
        base = nwords << 2
        if tail == 3:
            h ^= data[base + 2] << 16
        if tail >= 2:
            h ^= data[base + 1] << 8
        h ^= data[base]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_for(key: bytes, partitions: int) -> int:
    """The partition of ``key`` in a topic of ``partitions`` partitions."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class KeyPartitioner:
    """``partition_for`` for one topic's partition count, remembering recent keys.

    The memory is a plain dict emptied when it reaches ``max_keys``: a miss costs one
    hash, and a key's partition does not depend on what is remembered.
    """

    __slots__ = ("_cache", "max_keys", "partitions")

    def __init__(self, partitions: int, max_keys: int = 16_384) -> None:
        if partitions < 1:
            raise ValueError(f"a topic has at least one partition, not {partitions}")
        self.partitions = partitions
        self.max_keys = max_keys
        self._cache: dict[bytes, int] = {}

    def __call__(self, key: bytes) -> int:
        cache = self._cache
        partition = cache.get(key)
        if partition is None:
            if len(cache) >= self.max_keys:
                cache.clear()
            partition = cache[key] = (murmur2(key) & 0x7FFFFFFF) % self.partitions
        return partition
