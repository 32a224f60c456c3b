"""``pipeline check``: configuration, then each service reached without side effects.

It refuses what ``pipeline run`` would refuse: a connection pooler in front of PostgreSQL
(asked of the server, :mod:`pipeline.pooler`), a topic whose partition count differs from
``PIPELINE_TOPIC_PARTITIONS``, an unreachable service.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import psycopg
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.service import RPCError

from pipeline import pooler
from pipeline.config import Settings
from pipeline.handshake import kafka_handshake, temporal_failure
from pipeline.reach import kafka_message, temporal_message
from pipeline.security import connect_temporal
from replication import preflight
from replication.dsn import DIRECT_HOST_HINT, looks_like_pooler_refusal
from replication.kafka_client import client_options


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    # A TLS or SASL handshake was refused: the configuration is wrong (exit 2).
    refused: bool = False


async def check_postgres(settings: Settings) -> CheckResult:
    try:
        # The replication checks concern the reader's role (sql/roles.sql).
        async with await psycopg.AsyncConnection.connect(
            settings.reader_dsn.get_secret_value(),
            autocommit=True,
            connect_timeout=5,
        ) as conn:
            facts = await preflight.read_facts(conn, settings.publication, settings.slot_name)
            superuser = await superuser_warning(settings)
    except psycopg.Error as exc:
        text = str(exc).strip()
        if looks_like_pooler_refusal(text):
            return CheckResult("postgres", False, f"{text}. {DIRECT_HOST_HINT}")
        return CheckResult("postgres", False, text)
    problems = [
        str(problem)
        for problem in preflight.problems(
            facts, settings.publication, settings.slot_name, creates_publication=True
        )
    ]
    try:
        finding = await asyncio.to_thread(pooler.probe, settings.database_url.get_secret_value())
    except psycopg.Error as exc:
        return CheckResult("postgres", False, f"pooler probe failed: {str(exc).strip()}")
    if finding.pooled:
        problems.append(
            "a connection pooler answers, not PostgreSQL itself: "
            + "; ".join(finding.evidence)
            + f". {DIRECT_HOST_HINT}"
        )
    if problems:
        return CheckResult("postgres", False, "; ".join(problems))
    slot = (
        f"slot {settings.slot_name} exists"
        if facts.slot_plugin is not None
        else f"slot {settings.slot_name} will be created"
    )
    if not facts.publication_exists:
        slot += f", publication {settings.publication} will be created"
    seen = "; ".join(finding.notes)
    return CheckResult(
        "postgres",
        True,
        f"wal_level=logical, replication allowed, {slot}, no pooler"
        + (f" ({seen})" if seen else "")
        + superuser,
    )


async def superuser_warning(settings: Settings) -> str:
    """``; WARNING ...`` naming each configured DSN that logs in as a superuser, or ``''``."""
    found = []
    configured = (settings.database_url, settings.reader_database_url)
    for dsn in dict.fromkeys(s.get_secret_value() for s in configured if s is not None):
        async with await psycopg.AsyncConnection.connect(dsn, connect_timeout=5) as conn:
            row = await (
                await conn.execute(
                    "SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user"
                )
            ).fetchone()
        if row is not None and row[1]:
            found.append(str(row[0]))
    if not found:
        return ""
    return (
        f"; WARNING: connected as superuser {', '.join(sorted(set(found)))}: use the "
        "least-privilege roles of sql/roles.sql (docs/security.md)"
    )


async def check_kafka(settings: Settings) -> CheckResult:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        request_timeout_ms=5000,
        **client_options(settings.kafka_security),
    )
    try:
        await asyncio.wait_for(admin.start(), 10)
        cluster = await admin.describe_cluster()
        topics = set(await admin.list_topics())
        names = [t for t in (settings.topic, settings.dead_letter_topic) if t in topics]
        described = await admin.describe_topics(names) if names else []
    except (KafkaError, OSError, TimeoutError) as exc:
        shake = await kafka_handshake(settings.kafka_bootstrap_servers, settings.kafka_security)
        if shake.refused:
            return CheckResult("kafka", False, shake.detail, refused=True)
        return CheckResult("kafka", False, kafka_message(settings.kafka_bootstrap_servers, exc))
    finally:
        await admin.close()
    # `pipeline run` refuses a topic whose partition count differs from the setting.
    problems = [
        f"topic {meta['topic']} has {len(meta['partitions'])} partitions, but "
        f"PIPELINE_TOPIC_PARTITIONS is {settings.topic_partitions}: set it to "
        f"{len(meta['partitions'])}"
        for meta in described
        if len(meta["partitions"]) != settings.topic_partitions
    ]
    if problems:
        return CheckResult("kafka", False, "; ".join(problems))
    brokers = len(cluster.get("brokers", []))
    topic = "exists" if settings.topic in topics else "will be created"
    return CheckResult("kafka", True, f"{brokers} broker(s); topic {settings.topic} {topic}")


async def check_temporal(settings: Settings) -> CheckResult:
    try:
        client = await asyncio.wait_for(
            connect_temporal(
                settings.temporal_address, settings.temporal_namespace, settings.temporal_security
            ),
            10,
        )
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=settings.temporal_namespace)
        )
    except (RPCError, RuntimeError, OSError, TimeoutError) as exc:
        shake = temporal_failure(settings.temporal_address, exc, settings.temporal_security)
        if shake.refused:
            return CheckResult("temporal", False, shake.detail, refused=True)
        return CheckResult("temporal", False, temporal_message(settings.temporal_address, exc))
    return CheckResult("temporal", True, f"namespace {settings.temporal_namespace} reachable")


async def run_checks(settings: Settings) -> list[CheckResult]:
    """Every check, concurrently; none of them changes anything."""
    return list(
        await asyncio.gather(
            check_postgres(settings), check_kafka(settings), check_temporal(settings)
        )
    )
