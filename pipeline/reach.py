"""Reaching the services before a command starts, and saying why one cannot be reached.

Each message names the service, where the pipeline looked for it (the variable), what
the client said, and the fix: one line an operator can act on, not a traceback.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from pipeline.errors import PipelineError
from pipeline.security import TemporalSecurity, connect_temporal
from replication.kafka_client import PLAINTEXT, KafkaSecurity, client_options

CONNECT_TIMEOUT_S = 15.0


class Unreachable(PipelineError):
    """A service the command needs does not answer (a runtime failure: exit 1)."""


def _said(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def kafka_message(servers: str, exc: BaseException) -> str:
    return (
        f"Kafka is unreachable at {servers} ({_said(exc)}): start the brokers, or fix "
        "PIPELINE_KAFKA_BOOTSTRAP_SERVERS"
    )


def temporal_message(address: str, exc: BaseException) -> str:
    return (
        f"Temporal is unreachable at {address} ({_said(exc)}): start the Temporal frontend, "
        "or fix PIPELINE_TEMPORAL_ADDRESS / PIPELINE_TEMPORAL_NAMESPACE"
    )


def postgres_message(exc: BaseException) -> str:
    return (
        f"PostgreSQL is unreachable ({_said(exc)}): start the server, or fix PIPELINE_DATABASE_URL"
    )


async def kafka(servers: str, security: KafkaSecurity = PLAINTEXT) -> None:
    """Raise :class:`Unreachable` unless a broker of ``servers`` answers."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=servers, request_timeout_ms=5000, **client_options(security)
    )
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # its "Unable connect" line would repeat ours
    try:
        await asyncio.wait_for(admin.start(), CONNECT_TIMEOUT_S)
    except (KafkaError, OSError, TimeoutError) as exc:
        raise Unreachable(kafka_message(servers, exc)) from exc
    finally:
        quiet.setLevel(level)
        await admin.close()


async def temporal(address: str, namespace: str, security: TemporalSecurity) -> None:
    """Raise :class:`Unreachable` unless the Temporal frontend at ``address`` answers."""
    try:
        await asyncio.wait_for(connect_temporal(address, namespace, security), CONNECT_TIMEOUT_S)
    except Exception as exc:  # whatever the bridge raises, the frontend did not answer
        raise Unreachable(temporal_message(address, exc)) from exc
