"""The WAL -> Kafka reader: ``run`` keeps replication sessions going across connection
loss, a busy slot and broker failures; one process per slot reads (DESIGN invariant 6).
The stream itself is :mod:`replication.session`; what to do about an error is
:mod:`replication.retry`'s table.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
from collections.abc import Mapping

from psycopg.conninfo import make_conninfo

from replication.errors import SlotInUse
from replication.retry import Backoff, Directive, classify
from replication.session import AckHook, ReaderConfig, ReaderStats, Session
from replication.slot import (
    SlotState,
    check_dsn,
    claim_reader_lock,
    connect_replication,
    drop_inactive_slot,
    preflight,
)
from replication.topics import ensure_topics, topic_specs
from replication.wire import ReplicationWire

__all__ = ["AckHook", "Reader", "ReaderConfig", "ReaderStats", "application_name"]

log = logging.getLogger(__name__)

INSTANCE_ID_ENV = "PIPELINE_INSTANCE_ID"


def application_name(instance_id: str = "", env: Mapping[str, str] | None = None) -> str:
    """``pipeline-reader/<instance>`` for the reader's PostgreSQL connections, so
    ``pg_stat_activity`` (and ``pipeline status``) names the slot's holder. The instance is
    ``instance_id``, else ``$PIPELINE_INSTANCE_ID`` (the pod name), else host-pid; cut to
    PostgreSQL's 63 bytes."""
    env = os.environ if env is None else env
    instance = (
        instance_id.strip()
        or env.get(INSTANCE_ID_ENV, "").strip()
        or f"{socket.gethostname()}-{os.getpid()}"
    )
    return f"pipeline-reader/{instance}".encode()[:63].decode(errors="ignore")


class Reader:
    """Streams ``domain_events`` from the slot into Kafka; one active per slot."""

    def __init__(self, config: ReaderConfig, *, ack_hook: AckHook | None = None) -> None:
        self.config = config
        self.stats = ReaderStats()
        self.application_name = application_name(config.instance_id)
        # Test seam: lets a test hold Kafka's acks back from the tracker.
        self._ack_hook = ack_hook

    async def run(self, stop: asyncio.Event) -> None:
        """Run sessions until stop is set; errors :mod:`replication.retry` calls fatal
        (bad configuration, bugs) are raised, every other one is retried."""
        backoff = Backoff(self.config.retry_min, self.config.retry_max)
        while not stop.is_set():
            self.stats.sessions += 1
            streamed_before = self.stats.events_read
            try:
                await self.session(stop)
                return
            except Exception as exc:
                rule = classify(exc)
                if rule.directive is Directive.FATAL:
                    raise
                if self.stats.events_read > streamed_before:
                    backoff.reset()  # the session got going: start the delays over
                wait = backoff.delay(rule.directive)
                self._report(exc, rule.hint, wait)
            finally:
                self.stats.active = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)

    def _report(self, exc: Exception, hint: str, wait: float) -> None:
        if isinstance(exc, SlotInUse):
            if self.stats.waiting_for_slot_pid != exc.pid:
                log.warning(
                    "slot=%s is in use by pid %s: another reader is active; waiting to take over",
                    exc.slot,
                    exc.pid,
                )
            self.stats.waiting_for_slot_pid = exc.pid
            return
        log.warning(
            "slot=%s reader session ended: %s: %s (%s); next attempt in %.1fs",
            self.config.slot,
            type(exc).__name__,
            exc,
            hint,
            wait,
        )

    async def session(self, stop: asyncio.Event) -> None:
        """One replication session: the replication connection and its lock first (a
        refusal leaves nothing behind), then preflight, the topics, (snapshot), stream."""
        check_dsn(self.config.dsn)
        cfg = dataclasses.replace(
            self.config, dsn=make_conninfo(self.config.dsn, application_name=self.application_name)
        )
        conn = await connect_replication(cfg.dsn, self.application_name)
        try:
            wire = ReplicationWire(conn)
            holder = await claim_reader_lock(wire, cfg.slot)
            if holder is not None:
                raise SlotInUse(cfg.slot, holder)
            await self._locked_session(cfg, wire, stop)
        finally:
            await conn.close()

    async def _locked_session(
        self, cfg: ReaderConfig, wire: ReplicationWire, stop: asyncio.Event
    ) -> None:
        # Only the lock holder may judge a slot unfinished: nobody else is creating it.
        state = await preflight(cfg.dsn, cfg.slot, cfg.publication)
        if state.active_pid is not None:
            raise SlotInUse(cfg.slot, state.active_pid)
        if state.exists and cfg.initial_snapshot and not state.snapshot_done:
            log.warning("slot=%s has no completed initial snapshot: recreating it", cfg.slot)
            await drop_inactive_slot(cfg.dsn, cfg.slot)
            state = SlotState(exists=False)
        # The topic, and the dead-letter topic the session writes rows it cannot convert
        # to (replication.topics: the same creation and policy as pipeline run's).
        await ensure_topics(
            cfg.kafka_bootstrap,
            topic_specs(cfg.topic, cfg.dead_letter_topic, cfg.partitions, cfg.replication_factor),
            cfg.kafka_security,
        )
        session = Session(cfg, self.stats, state, self._ack_hook)
        await session.run(stop, wire)
