"""One topic creation (replication.topics) against the real Kafka: ``pipeline run``'s
start-up and every reader session create the source and the dead-letter topic the same
way, and both refuse a source topic whose partition count is not the configured one."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from pipeline.agents.errors import TopicLayoutError as PipelineTopicLayoutError
from pipeline.config import Settings
from pipeline.lifecycle import ensure_topics as ensure_pipeline_topics
from replication.errors import TopicLayoutError
from replication.reader import Reader, ReaderConfig
from replication.retry import EXIT_CONFIG, Directive, classify
from replication.topics import MAX_MESSAGE_BYTES, TopicSpec, ensure_topics, topic_specs

pytestmark = pytest.mark.integration


def names() -> tuple[str, str]:
    topic = f"topics-{uuid.uuid4().hex[:10]}"
    return topic, f"{topic}-dlq"


async def describe(bootstrap: str, *topics: str) -> dict[str, dict[str, Any]]:
    """Each existing topic of ``topics``: its partition count and retention/size configs."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        found = [t for t in topics if t in existing]
        if not found:
            return {}
        counts = {m["topic"]: len(m["partitions"]) for m in await admin.describe_topics(found)}
        configs = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t) for t in found]
        )
        out: dict[str, dict[str, Any]] = {t: {"partitions": counts[t]} for t in found}
        for response in configs:
            for resource in response.resources:
                name, entries = resource[3], resource[4]
                out[name].update({e[0]: e[1] for e in entries})
        return out
    finally:
        await admin.close()


async def create(bootstrap: str, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def test_missing_topics_are_created_alike_and_a_second_call_changes_nothing(
    kafka_bootstrap: str,
) -> None:
    topic, dlq = names()
    counts = await ensure_topics(kafka_bootstrap, topic_specs(topic, dlq, 3, 1))
    assert counts == {topic: 3, dlq: 3}
    shown = await describe(kafka_bootstrap, topic, dlq)
    for name in (topic, dlq):
        assert shown[name]["partitions"] == 3
        assert shown[name]["retention.ms"] == "-1"
        assert shown[name]["max.message.bytes"] == str(MAX_MESSAGE_BYTES)
    assert await ensure_topics(kafka_bootstrap, topic_specs(topic, dlq, 3, 1)) == counts


async def test_a_source_topic_with_another_partition_count_is_refused_by_both_callers(
    kafka_bootstrap: str, fresh_db: str
) -> None:
    topic, dlq = names()
    await create(kafka_bootstrap, topic, 2)
    with pytest.raises(TopicLayoutError, match=f"topic {topic} has 2 partitions, but "):
        await ensure_topics(kafka_bootstrap, topic_specs(topic, dlq, 4, 1))
    # pipeline run's start-up: the same error (the class the CLI turns into exit 2).
    settings = Settings(
        database_url=fresh_db,
        kafka_bootstrap_servers=kafka_bootstrap,
        temporal_address="127.0.0.1:7233",
        topic=topic,
        dead_letter_topic=dlq,
        topic_partitions=4,
    )
    with pytest.raises(PipelineTopicLayoutError, match="PIPELINE_TOPIC_PARTITIONS is 4"):
        await ensure_pipeline_topics(settings)
    # The reader: a setup error, fatal (not retried), exit 2.
    config = ReaderConfig(
        dsn=fresh_db,
        kafka_bootstrap=kafka_bootstrap,
        topic=topic,
        dead_letter_topic=dlq,
        partitions=4,
        slot=f"topics_{uuid.uuid4().hex[:10]}",
        initial_snapshot=False,
    )
    with pytest.raises(TopicLayoutError) as raised:
        await asyncio.wait_for(Reader(config).run(asyncio.Event()), 120)
    rule = classify(raised.value)
    assert (rule.directive, rule.exit_code) == (Directive.FATAL, EXIT_CONFIG)


async def test_the_dead_letter_topics_partition_count_is_not_checked(
    kafka_bootstrap: str,
) -> None:
    # Auto-created by a producer with one partition, say: nothing depends on its count.
    topic, dlq = names()
    await create(kafka_bootstrap, dlq, 1)
    counts = await ensure_topics(kafka_bootstrap, topic_specs(topic, dlq, 3, 1))
    assert counts == {topic: 3, dlq: 1}


async def test_the_reader_creates_the_dead_letter_topic_it_writes_to(
    kafka_bootstrap: str, fresh_db: str
) -> None:
    topic, dlq = names()
    config = ReaderConfig(
        dsn=fresh_db,
        kafka_bootstrap=kafka_bootstrap,
        topic=topic,
        dead_letter_topic=dlq,
        partitions=2,
        slot=f"topics_{uuid.uuid4().hex[:10]}",
        status_interval=0.2,
        initial_snapshot=False,
    )
    reader = Reader(config)
    stop = asyncio.Event()
    task = asyncio.create_task(reader.run(stop))
    try:
        async with asyncio.timeout(120):
            while not reader.stats.active:
                assert not task.done(), task.exception()
                await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
    shown = await describe(kafka_bootstrap, topic, dlq)
    assert shown[dlq]["partitions"] == 2
    assert shown[dlq]["retention.ms"] == "-1"
    assert shown[topic]["partitions"] == 2


def test_a_spec_is_checked_unless_it_says_not() -> None:
    source, dead = topic_specs("t", "t-dlq", 8, 3)
    assert source == TopicSpec("t", 8, 3)
    assert (dead.name, dead.partitions, dead.check_partitions) == ("t-dlq", 8, False)
