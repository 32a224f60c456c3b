"""Issue 15 item 8: the Kafka tools docs/operations.md names run as `pipeline dev kafka`."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from pipeline.dev.layout import DevLayout, load_layout
from replication.topics import TopicSpec, ensure_topic

pytestmark = pytest.mark.integration

PIPELINE = str(Path(sys.executable).parent / "pipeline")


def dev_kafka(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PIPELINE, "dev", "kafka", *args], capture_output=True, text=True, timeout=180, check=False
    )


async def test_kafka_configs_and_topics_run_against_the_broker(dev_layout: DevLayout) -> None:
    topic = f"tools-{uuid.uuid4().hex[:8]}"
    await ensure_topic(dev_layout.kafka_bootstrap, TopicSpec(topic, 2, 1))
    server = ("--bootstrap-server", load_layout().kafka_bootstrap)
    described = await asyncio.to_thread(
        dev_kafka, "kafka-configs", *server, "--describe", "--entity-type", "topics",
        "--entity-name", topic,
    )  # fmt: skip
    assert described.returncode == 0, described.stderr
    assert "retention.ms=-1" in described.stdout
    listed = await asyncio.to_thread(dev_kafka, "kafka-topics.sh", *server, "--list")
    assert listed.returncode == 0, listed.stderr
    assert topic in listed.stdout.split()


def test_an_unknown_tool_is_a_usage_error() -> None:
    result = dev_kafka("kafka-frobnicate")
    assert result.returncode == 2
    assert "unknown Kafka tool 'kafka-frobnicate'" in result.stderr
    assert "kafka-configs" in result.stderr
