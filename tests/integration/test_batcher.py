"""PartitionBatcher with the real idempotent aiokafka producer and broker (invariants 2, 4)."""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from replication.batcher import PartitionBatcher
from replication.lsn import LSN, Position
from replication.partitioner import partition_for
from replication.topics import MAX_MESSAGE_BYTES, TopicSpec, ensure_topic
from tests.integration.kafka_helpers import read_topic

pytestmark = pytest.mark.integration

EVENTS = 20_000
PARTITIONS = 4


async def test_batches_keep_partition_order_and_ack_every_position(kafka_bootstrap: str) -> None:
    topic = f"batcher-{uuid.uuid4().hex[:10]}"
    await ensure_topic(kafka_bootstrap, TopicSpec(topic, PARTITIONS))
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap,
        enable_idempotence=True,
        acks="all",
        max_batch_size=64 * 1024,  # small, so one partition needs many batches
        max_request_size=MAX_MESSAGE_BYTES,
    )
    await producer.start()
    acked: Counter[Position] = Counter()
    errors: list[BaseException] = []

    def on_acks(positions: list[Position], error: BaseException | None) -> None:
        if error is not None:
            errors.append(error)
        acked.update(positions)

    batcher = PartitionBatcher(
        producer, topic, PARTITIONS, on_acks, max_message_bytes=MAX_MESSAGE_BYTES
    )
    batcher.start()
    keys = [str(uuid.uuid4()).encode() for _ in range(50)]
    try:
        for i in range(EVENTS):
            commit = LSN(0x1000 + i // 10)
            position = Position(commit, i % 10)
            batcher.add(
                position,
                keys[i % len(keys)],
                orjson.dumps({"seq": i, "pad": "x" * (i % 300)}),
                [("commit_lsn", str(commit).encode()), ("idx", str(i % 10).encode())],
            )
        await batcher.flush()
    finally:
        await batcher.close()
        await producer.stop()
    assert not errors
    assert len(acked) == EVENTS and set(acked.values()) == {1}  # each position once

    records = await read_topic(kafka_bootstrap, topic, EVENTS)
    assert len(records) == EVENTS
    by_key: dict[bytes, list[tuple[int, int, int]]] = defaultdict(list)
    for r in records:
        by_key[r.key].append((r.partition, r.offset, int(r.row["seq"])))  # type: ignore[call-overload]
    for key, recs in by_key.items():
        assert {p for p, _, _ in recs} == {partition_for(key, PARTITIONS)}
        seqs = [s for _, _, s in sorted(recs)]
        assert seqs == sorted(seqs)
