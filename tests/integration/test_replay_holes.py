"""Issue 15 item 3: replay never starts where a partition lost records, and says where to.

The topic is written as the reader writes it (key = stream id, JSON value, commit_lsn/idx
headers), then the heads of two partitions are deleted with Kafka's own DeleteRecords.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete
from aiokafka.structs import TopicPartition

from pipeline.config import load_settings
from pipeline.dev.layout import DevLayout
from pipeline.replay import ReplayRangeError, replay
from replication.lsn import LSN

pytestmark = pytest.mark.integration

PIPELINE = str(Path(sys.executable).parent / "pipeline")
# partition -> commit LSNs of its records, in commit order.
LAYOUT = {0: ["0/10", "0/20", "0/30"], 1: ["0/15", "0/40", "0/50"]}


async def write_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 2, 1)])
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            for partition, lsns in LAYOUT.items():
                for lsn in lsns:
                    value = {"id": str(uuid.uuid4()), "event_type": "test.happened"}
                    await producer.send_and_wait(
                        topic,
                        orjson.dumps(value),
                        key=uuid.uuid4().bytes,
                        partition=partition,
                        headers=[("commit_lsn", lsn.encode()), ("idx", b"0")],
                    )
        finally:
            await producer.stop()
        # Partition 0 loses 0/10, partition 1 loses 0/15 and 0/40.
        await admin.delete_records(
            {
                TopicPartition(topic, 0): RecordsToDelete(before_offset=1),
                TopicPartition(topic, 1): RecordsToDelete(before_offset=2),
            }
        )
    finally:
        await admin.close()


async def test_replay_refuses_a_range_with_a_hole_and_suggests_the_maximum(
    dev_layout: DevLayout, fresh_db: str
) -> None:
    topic = f"replay-holes-{uuid.uuid4().hex[:8]}"
    await write_topic(dev_layout.kafka_bootstrap, topic)
    env = {
        "PIPELINE_DATABASE_URL": fresh_db,
        "PIPELINE_KAFKA_BOOTSTRAP_SERVERS": dev_layout.kafka_bootstrap,
        "PIPELINE_TEMPORAL_ADDRESS": dev_layout.temporal_address,
        "PIPELINE_TOPIC": topic,
        "PIPELINE_TOPIC_PARTITIONS": "2",
    }
    settings = load_settings(env)
    # 0/20 is partition 0's first retained LSN, the minimum the old suggestion gave:
    # partition 1's 0/40 was deleted and would be skipped silently.
    with pytest.raises(ReplayRangeError) as info:
        await replay(settings, LSN.parse("0/20"), dry_run=True)
    assert info.value.oldest == LSN.parse("0/50")
    assert info.value.hole.partitions == (1,)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    result = await asyncio.to_thread(
        subprocess.run,
        [PIPELINE, "replay", "--from-lsn", "0/20", "--dry-run"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "partition(s) p1" in result.stderr
    assert "Use --from-lsn 0/50 or later" in result.stderr
    assert "Traceback" not in result.stderr
    # From the suggestion on, the replay is complete: 0/50 is re-driven, nothing skipped.
    summary = await replay(settings, LSN.parse("0/50"), dry_run=True)
    assert summary.events_redriven == 1
    assert summary.records_scanned == 3
    assert summary.safe_from_lsn == LSN.parse("0/50")
