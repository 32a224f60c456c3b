"""The Faust application of ``pipeline run``: one consumer edge on the domain-events topic.

Faust keeps the app, the consumer group and the offsets; the records are taken off it in
batches at the consumer edge (:mod:`pipeline.consumer.edge`), without Faust's per-record
``Event`` and ``Stream``, and routed once: every record to the projection, which folds
what queued in one transaction; an initiated or a pending event also to its handler
(:mod:`pipeline.agents.runtime`), different streams concurrently and each stream in
order (:mod:`pipeline.agents.dispatch`), so a partition's events of one stream are
handled in commit order (DESIGN.md invariant 4). A record is acked only after all its
effects happened, in partition order, so an effect that failed is retried, never lost,
and Faust never commits past it. The handlers see plain
:class:`~pipeline.agents.runtime.Record` values.

Run it with ``run_app(settings)`` (``pipeline run``) or ``python -m pipeline.app``; its
start-up (the topics) and shutdown (the deadline after a signal) are
:mod:`pipeline.lifecycle`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import faust
from mode import BaseSignalT
from prometheus_client import generate_latest

from pipeline import eventloop, metrics
from pipeline import web as pipeline_web
from pipeline.agents import effects
from pipeline.agents.dispatch import DEFAULT_MAX_IN_FLIGHT, StreamDispatcher
from pipeline.agents.routing import Routed
from pipeline.agents.runtime import AgentRuntime, Record
from pipeline.config import Settings, load_settings
from pipeline.consumer import fetching
from pipeline.consumer.edge import ConsumerEdge, EdgeLimits, MessageTopic
from pipeline.contract import default_contract
from pipeline.health import not_ready_reasons
from pipeline.lifecycle import (
    BackgroundTask,
    PipelineApp,
    TablelessManager,
    Worker,
    ensure_topics,
    kafka_servers,
)
from pipeline.logsetup import root_level_name, worker_logging_config
from pipeline.security import faust_credentials
from replication.producer import MAX_MESSAGE_BYTES

if TYPE_CHECKING:
    from temporalio.client import Client

log = logging.getLogger(__name__)

INSTANCE_ID_ENV: Final = "PIPELINE_INSTANCE_ID"
DATA_DIR_ENV: Final = "PIPELINE_DATA_DIR"
# Handlers in flight: enough to overlap the start RPCs of many streams, few
# enough not to flood Temporal with starts or queue long behind the agent's connection.
HANDLER_MAX_IN_FLIGHT: Final = DEFAULT_MAX_IN_FLIGHT
# Handler records submitted and unfinished before the edge waits: while Temporal is
# unreachable the starts wait in their retries, and the edge keeps feeding the
# projection (every other record) until this many bootstraps are waiting.
HANDLER_MAX_WAITING: Final = 5_000
# PostgreSQL connections of each handler role (enqueue, starter). With one, every
# claim, history read and workflow_started of every stream queued on it: at 20
# bootstraps/s the queue alone was `pending` -> `claimed` 161 ms p50 (docs/benchmarks.md).
HANDLER_CONNECTIONS: Final = 6
# What one fetch may buffer: Faust's default is 4 MiB per partition, unpacked into Python
# objects several times that size; with the edge taking 4,000 records at a time, larger
# fetches only held memory (pipeline run peaked at 284 MiB on a 100k drain). A record
# larger than this still comes whole (Kafka returns at least one batch per partition).
FETCH_BYTES_PER_PARTITION: Final = 1024 * 1024
POLL_RECORDS: Final = 4_000
# A consumer that died without leaving the group (SIGKILL, a lost node; and a static
# member never leaves, even on SIGTERM) keeps its partitions until the broker has missed
# its heartbeats for the session timeout. Faust's default of 60 s left a dead replica's
# partitions unconsumed for a minute; 6 s is the brokers' default minimum
# (group.min.session.timeout.ms). BROKER_SESSION_TIMEOUT / BROKER_HEARTBEAT_INTERVAL in
# the environment still override these (Faust reads them itself).
SESSION_TIMEOUT_S: Final = 6.0
HEARTBEAT_INTERVAL_S: Final = 1.5


def worker_id_from_env(env: Mapping[str, str]) -> str:
    """This process's id: ``$PIPELINE_INSTANCE_ID`` (the pod name), else host-pid."""
    return env.get(INSTANCE_ID_ENV, "").strip() or f"{socket.gethostname()}-{os.getpid()}"


def data_dir_from_env(env: Mapping[str, str], worker_id: str) -> Path:
    """Faust's data directory: ``$PIPELINE_DATA_DIR``, else ``.cache/faust/<worker id>``.

    Per process, because two workers on one host must not share Faust's local state.
    """
    raw = env.get(DATA_DIR_ENV, "").strip()
    return Path(raw) if raw else Path(".cache") / "faust" / worker_id


def _stream_key(routed: Routed) -> bytes | None:
    """The record's stream: the Kafka key is the stream_id (no key: a stream of its own)."""
    return routed.record.key or None


def create_app(
    settings: Settings,
    *,
    extra_tasks: Sequence[BackgroundTask] = (),
    env: Mapping[str, str] | None = None,
    temporal_client: Client | None = None,
    loop: asyncio.AbstractEventLoop | None = None,
) -> PipelineApp:
    """The Faust app: enqueue, starter and projection agents, ``/metrics``, extra tasks.

    ``extra_tasks`` are started with the app and stopped with it (the replication reader
    goes there). ``env`` defaults to ``os.environ`` (PIPELINE_INSTANCE_ID,
    PIPELINE_DATA_DIR). The contract is loaded here, before any I/O, so a broken
    contract stops the process instead of dead-lettering every record.
    """
    env = os.environ if env is None else env
    default_contract()
    fetching.install()  # Faust's 1.5 s fetch wait held records back (pipeline/consumer/fetching.py)
    worker_id = worker_id_from_env(env)
    instance_id = env.get(INSTANCE_ID_ENV, "").strip() or None
    data_dir = data_dir_from_env(env, worker_id)
    data_dir.parent.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    app = PipelineApp(
        settings.consumer_group,
        broker=[f"kafka://{server}" for server in kafka_servers(settings)],
        broker_credentials=faust_credentials(settings.kafka_security),
        datadir=str(data_dir),
        web_port=settings.web_port,
        topic_partitions=settings.topic_partitions,
        store="memory://",  # no Faust tables: the read models live in PostgreSQL
        TableManager=TablelessManager,
        consumer_group_instance_id=instance_id,  # static membership, KIP-345
        broker_session_timeout=SESSION_TIMEOUT_S,
        broker_heartbeat_interval=HEARTBEAT_INTERVAL_S,
        consumer_auto_offset_reset="earliest",
        consumer_max_fetch_size=FETCH_BYTES_PER_PARTITION,
        broker_max_poll_records=POLL_RECORDS,
        producer_acks=-1,
        producer_max_request_size=MAX_MESSAGE_BYTES,  # dead letters as large as the topic takes
        autodiscover=False,
        loop=loop,
    )
    source = MessageTopic(
        app,
        topics=[settings.topic],
        partitions=settings.topic_partitions,
        key_serializer="raw",
        value_serializer="raw",
    )
    dead_letters = app.topic(
        settings.dead_letter_topic,
        partitions=settings.topic_partitions,
        key_serializer="raw",
        value_serializer="raw",
    )

    async def dead_letter(record: Record, headers: list[tuple[str, bytes]]) -> None:
        # force=True: inside an agent Faust would otherwise hold the message until the
        # source record is acked, which here waits for this very send.
        sent = await dead_letters.send(
            key=record.key, value=record.value, headers=headers, force=True
        )
        await sent

    temporal = effects.WorkflowStartClient(
        settings.temporal_address,
        settings.temporal_namespace,
        settings.temporal_task_queue,
        client=temporal_client,
        security=settings.temporal_security,
    )
    runtime = AgentRuntime(
        worker_id=worker_id,
        consumer=f"{settings.consumer_group}.projection",
        enqueue_db=effects.Database(
            settings.database_url.get_secret_value(), "enqueue", HANDLER_CONNECTIONS
        ),
        starter_db=effects.Database(
            settings.database_url.get_secret_value(), "starter", HANDLER_CONNECTIONS
        ),
        projection_db=effects.Database(settings.database_url.get_secret_value(), "projection"),
        temporal=temporal,
        dead_letter=dead_letter,
    )

    # The handlers' statements go on connections borrowed per statement (up to
    # HANDLER_CONNECTIONS per role), so one stream's history read does not queue behind
    # another's; their appends (the handoff, workflow_started) are committed in groups
    # (pipeline.agents.groupcommit): one commit for the handlers that emit at once.
    handlers = StreamDispatcher(
        "handlers",
        runtime.handle,
        _stream_key,
        max_in_flight=HANDLER_MAX_IN_FLIGHT,
        max_waiting=HANDLER_MAX_WAITING,
    )
    edge = ConsumerEdge(
        app,
        source,
        project=runtime.project,
        handlers=handlers,
        limits=EdgeLimits(max_unacked=settings.max_unacked_records),
    )
    app.inbox = edge.inbox  # the consumer's fetch loop fills it (pipeline.consumer.fetching)

    async def metrics_page(view: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        return view.bytes(generate_latest(), content_type="text/plain; version=0.0.4")

    app.page("/metrics")(metrics_page)
    metrics.export_consumer_lag(lambda: app.consumer)  # per-partition lag at scrape time

    async def healthz(view: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        return view.json({"status": "ok"})

    async def readyz(view: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        reasons = not_ready_reasons()
        if app.rebalancing:
            reasons.append("consumer group is rebalancing")
        if reasons:
            return view.json({"status": "not ready", "reasons": reasons}, status=503)
        return view.json({"status": "ready"})

    app.page("/healthz")(healthz)
    app.page("/readyz")(readyz)
    # The accept page, the write auth.
    pipeline_web.install(app, settings.database_url.get_secret_value(), env)
    # The edge starts with the app, as the reader does; it is cancelled when the app stops.
    # temporalio is imported and connected meanwhile, off the first record's path.
    app.early_tasks = [*extra_tasks, edge.run, temporal.warm_up]

    async def close_runtime(
        sender: object, *args: object, signal: BaseSignalT[Any], **kwargs: object
    ) -> None:
        # The edge first: its handlers and its projection lane use the runtime's
        # connections, and a connection closed under a statement in flight is a use of
        # freed memory in libpq (a crash at exit), not an error.
        await edge.stop()
        await runtime.close()

    # mode annotates handlers with mypy_extensions' NamedArg("BaseSignalT", ...), a string
    # type mypy cannot match against any real signature; the handler has the documented one.
    app.on_before_shutdown.connect(close_runtime)  # type: ignore[arg-type]
    log.info(
        "pipeline app: group=%s worker_id=%s static_member=%s topic=%s dlq=%s partitions=%d",
        settings.consumer_group,
        worker_id,
        instance_id is not None,
        settings.topic,
        settings.dead_letter_topic,
        settings.topic_partitions,
    )
    return app


def run_app(
    settings: Settings,
    *,
    extra_tasks: Sequence[BackgroundTask] = (),
    loglevel: str | None = None,
) -> None:
    """Create the topics, then run the Faust worker until SIGINT/SIGTERM (blocking).

    loglevel defaults to the root logger's (the CLI's ``-v`` is debug)."""
    loglevel = loglevel or root_level_name()
    loop = eventloop.new_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(ensure_topics(settings))
    app = create_app(settings, extra_tasks=extra_tasks, loop=loop)
    worker = Worker(
        app,
        loop=loop,
        loglevel=loglevel,
        quiet=True,
        logging_config=worker_logging_config(loglevel),
    )
    worker.execute_from_commandline()


def main() -> None:
    """``python -m pipeline.app``: settings from the environment, then :func:`run_app`."""
    run_app(load_settings(), loglevel="info")


if __name__ == "__main__":
    main()
