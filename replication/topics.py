"""The topics the pipeline writes to, created when missing: one implementation, one policy.

``pipeline run`` creates them before its Faust worker starts
(:func:`pipeline.lifecycle.ensure_topics`), and every reader session before it produces
(:class:`~replication.reader.Reader`), the dead-letter topic included: each creates what
it writes to, whichever starts first.

The policy on a topic that exists with another partition count than the configured one
is to **refuse** (:class:`~replication.errors.TopicLayoutError`, a setup error: exit 2,
not retried), never to warn and go on. The count decides which partition holds a
stream (DESIGN invariant 4: one stream, one partition, in order); a process going on with
a count other than the one the operator configured hides a mistake that is cheap to fix
before any event moves and expensive after (a topic's partitions cannot be merged back).
The dead-letter topic's count is not checked: nothing depends on which of its partitions
holds a letter.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from replication.errors import TopicLayoutError
from replication.kafka_client import PLAINTEXT, KafkaSecurity, client_options

log = logging.getLogger(__name__)

# Events up to this size go through; the topics are created to accept them.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# A topic just created is briefly unknown to the broker answering a metadata request.
_METADATA_WAIT_S = 10.0
_METADATA_POLL_S = 0.1


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic the pipeline writes to; created with these settings when missing."""

    name: str
    partitions: int
    replication_factor: int = 1
    # Retention -1: the topic is the log `pipeline replay` re-reads (DESIGN invariant 5);
    # dead letters are kept until handled.
    retention_ms: int = -1
    # Refuse an existing topic with another partition count (see the module docstring).
    check_partitions: bool = True

    def new_topic(self) -> NewTopic:
        return NewTopic(
            self.name,
            num_partitions=self.partitions,
            replication_factor=self.replication_factor,
            topic_configs={
                "retention.ms": str(self.retention_ms),
                "max.message.bytes": str(MAX_MESSAGE_BYTES),
            },
        )


def topic_specs(
    topic: str, dead_letter_topic: str, partitions: int, replication_factor: int
) -> list[TopicSpec]:
    """The source topic (its count checked) and the dead-letter topic (created alike)."""
    return [
        TopicSpec(topic, partitions, replication_factor),
        TopicSpec(dead_letter_topic, partitions, replication_factor, check_partitions=False),
    ]


async def ensure_topics(
    bootstrap: str | Sequence[str],
    specs: Sequence[TopicSpec],
    security: KafkaSecurity = PLAINTEXT,
) -> dict[str, int]:
    """Create each topic of ``specs`` that is missing; return every topic's partition count.

    Raises :class:`TopicLayoutError` for a checked topic with another partition count, or
    one that could not be created for a reason retrying does not fix (the broker's error
    names it); a KafkaError for an outage or a retriable refusal.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_options(security))
    await admin.start()
    try:
        refused = await _create(admin, specs)
        counts = {}
        for spec in specs:
            count = await _partition_count(admin, spec.name, refused.get(spec.name))
            if spec.check_partitions and count != spec.partitions:
                raise TopicLayoutError(
                    f"topic {spec.name} has {count} partitions, but PIPELINE_TOPIC_PARTITIONS "
                    f"is {spec.partitions}",
                    f"set it to {count} (a topic's partition count decides which partition "
                    "holds a stream)",
                )
            counts[spec.name] = count
        return counts
    finally:
        await admin.close()


async def ensure_topic(bootstrap: str, spec: TopicSpec, security: KafkaSecurity = PLAINTEXT) -> int:
    """:func:`ensure_topics` for one topic; returns its partition count."""
    return (await ensure_topics(bootstrap, [spec], security))[spec.name]


async def _create(admin: AIOKafkaAdminClient, specs: Sequence[TopicSpec]) -> dict[str, Exception]:
    """Create the topics; the error of each the broker refused to create (other than
    because it exists). A refused topic may still exist (a principal without CREATE on a
    topic the operator made): the caller looks."""
    try:
        response = await admin.create_topics([spec.new_topic() for spec in specs])
    except TopicAlreadyExistsError:
        return {}
    refused: dict[str, Exception] = {}
    for name, code, *rest in response.topic_errors:
        if code == 0:
            spec = next(s for s in specs if s.name == name)
            log.info("created topic %s with %d partitions", name, spec.partitions)
        elif code != TopicAlreadyExistsError.errno:
            refused[name] = for_code(code)(f"cannot create topic {name}: {rest[0] if rest else ''}")
    return refused


async def _partition_count(
    admin: AIOKafkaAdminClient, topic: str, refused: Exception | None
) -> int:
    waited = 0.0
    while True:
        (meta,) = await admin.describe_topics([topic])
        if meta["error_code"] == 0 and meta["partitions"]:
            return len(meta["partitions"])
        if refused is not None:  # not created, and not there: say why
            if getattr(refused, "retriable", False):
                raise refused
            raise TopicLayoutError(
                str(refused),
                "create the topic (see PIPELINE_TOPIC_PARTITIONS) or grant the pipeline's "
                "Kafka principal CREATE on it",
            )
        if waited >= _METADATA_WAIT_S:
            raise TopicLayoutError(
                f"topic {topic} is still not in the cluster's metadata {waited:.0f}s after "
                "it was created",
                "check the brokers' health (kafka-topics --describe)",
            )
        await asyncio.sleep(_METADATA_POLL_S)
        waited += _METADATA_POLL_S
