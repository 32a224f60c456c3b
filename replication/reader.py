"""The WAL -> Kafka reader: ``run`` keeps replication sessions going across connection
loss, a busy slot and broker failures; one process per slot reads (DESIGN invariant 6).
The stream itself is :mod:`replication.session`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import psycopg

from replication.errors import DeliveryError, ReaderSetupError, SlotInUse
from replication.producer import TopicSpec, ensure_topic
from replication.session import AckHook, ReaderConfig, ReaderStats, Session
from replication.slot import (
    SlotState,
    claim_reader_lock,
    drop_inactive_slot,
    preflight,
)
from replication.wire import ServerError, StreamClosed

__all__ = ["AckHook", "Reader", "ReaderConfig", "ReaderStats"]

log = logging.getLogger(__name__)


class Reader:
    """Streams ``domain_events`` from the slot into Kafka; one active per slot."""

    def __init__(self, config: ReaderConfig, *, ack_hook: AckHook | None = None) -> None:
        self.config = config
        self.stats = ReaderStats()
        # Test seam: lets a test hold Kafka's acks back from the tracker.
        self._ack_hook = ack_hook

    async def run(self, stop: asyncio.Event) -> None:
        """Run sessions until stop is set; setup errors (bad config) are raised."""
        delay = self.config.retry_min
        while not stop.is_set():
            self.stats.sessions += 1
            try:
                await self.session(stop)
                return
            except ReaderSetupError:
                raise
            except SlotInUse as exc:
                if self.stats.waiting_for_slot_pid != exc.pid:
                    log.warning(
                        "slot=%s is in use by pid %s: another reader is active; waiting to take over",
                        exc.slot,
                        exc.pid,
                    )
                self.stats.waiting_for_slot_pid = exc.pid
                delay = self.config.retry_min
                wait = 1.0
            except (psycopg.Error, StreamClosed, ServerError, DeliveryError, OSError) as exc:
                log.warning("reader session ended: %s; reconnecting in %.1fs", exc, delay)
                wait, delay = delay, min(delay * 2, self.config.retry_max)
            finally:
                self.stats.active = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)

    async def session(self, stop: asyncio.Event) -> None:
        """One replication session: preflight, (snapshot), stream until stop or failure."""
        cfg = self.config
        state = await preflight(cfg.dsn, cfg.slot, cfg.publication)
        if state.active_pid is not None:
            raise SlotInUse(cfg.slot, state.active_pid)
        lock, holder = await claim_reader_lock(cfg.dsn, cfg.slot)
        if lock is None:
            raise SlotInUse(cfg.slot, holder)
        try:
            await self._locked_session(stop)
        finally:
            await lock.close()

    async def _locked_session(self, stop: asyncio.Event) -> None:
        cfg = self.config
        # Only the lock holder may judge a slot unfinished: nobody else is creating it.
        state = await preflight(cfg.dsn, cfg.slot, cfg.publication)
        if state.active_pid is not None:
            raise SlotInUse(cfg.slot, state.active_pid)
        if state.exists and cfg.initial_snapshot and not state.snapshot_done:
            log.warning("slot=%s has no completed initial snapshot: recreating it", cfg.slot)
            await drop_inactive_slot(cfg.dsn, cfg.slot)
            state = SlotState(exists=False)
        await ensure_topic(
            cfg.kafka_bootstrap,
            TopicSpec(cfg.topic, cfg.partitions, cfg.replication_factor),
            cfg.kafka_security,
        )
        session = Session(self.config, self.stats, state, self._ack_hook)
        await session.run(stop)
