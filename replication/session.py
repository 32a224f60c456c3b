"""One replication session: the COPY_BOTH stream of the slot into the Kafka topic.

Four roles, one module each, wired here:

- :mod:`replication.listener`: the replication connection (start, frames, status updates);
- :mod:`replication.processor`: frames to Kafka records, dead letters, delivery reports;
- :mod:`replication.checkpointer`: the flush tracker and the status updates it allows:
  the slot never confirms WAL whose events Kafka does not hold (docs/design.md,
  invariant 2); :mod:`replication.committer` makes delivered events durable first;
- :mod:`replication.slot`: the setup (a new slot and its initial snapshot).

The session is written against :mod:`replication.ports` (the connection and the
producer), so a test can run it without PostgreSQL or Kafka. :mod:`replication.reader`
runs sessions, one after another, and decides about retries.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

from replication.batcher import AcksCallback
from replication.checkpointer import Checkpointer
from replication.committer import Committer
from replication.listener import Listener
from replication.lsn import LSN, Position
from replication.ports import ProducerFactory, RecordProducer, ReplicationStream, ResumeReader
from replication.processor import Processor
from replication.producer import EventProducer, transactional_id
from replication.reader_config import (
    BINARY_MIN_SERVER_VERSION,
    AckHook,
    ReaderConfig,
    ReaderStats,
    start_replication_command,
)
from replication.slot import SlotState, create_slot

__all__ = [
    "BINARY_MIN_SERVER_VERSION",
    "AckHook",
    "ReaderConfig",
    "ReaderStats",
    "Session",
    "kafka_producer",
    "start_replication_command",
]

log = logging.getLogger(__name__)


def kafka_producer(config: ReaderConfig) -> ProducerFactory:
    """The session's real producer: :class:`~replication.producer.EventProducer`."""

    def build(on_acks: AcksCallback) -> RecordProducer:
        return EventProducer(
            config.kafka_bootstrap,
            config.topic,
            on_acks,
            linger=config.batch_linger,
            transactional_id=(
                transactional_id(config.topic, config.slot) if config.transactional else None
            ),
            security=config.kafka_security,
        )

    return build


class Session:
    """One session on one replication connection; :meth:`run` once."""

    def __init__(
        self,
        config: ReaderConfig,
        stats: ReaderStats,
        state: SlotState,
        ack_hook: AckHook | None = None,
        *,
        producer: ProducerFactory | None = None,
        read_resume: ResumeReader | None = None,
    ) -> None:
        self.cfg, self.stats, self.state = config, stats, state
        self._ack_hook = ack_hook
        self.producer = (producer or kafka_producer(config))(self._on_acks)
        self.checkpointer = Checkpointer(state.confirmed_flush or LSN.ZERO, stats)
        # The producer's transactions: start-up (fencing), resume positions, commits.
        self.committer = Committer(
            config,
            self.producer,
            tracker_acks=self.checkpointer.tracker.ack_streamed,
            dropped=self._on_acks,
            fail=self._fail,
            read_resume=read_resume,
        )
        self._processor: Processor | None = None

    @property
    def processor(self) -> Processor:
        """Built once the producer has started (it needs the producer's ``add``)."""
        assert self._processor is not None, "run() first"
        return self._processor

    def _on_acks(self, positions: list[Position], error: BaseException | None) -> None:
        # Nothing is sent before the processor exists, so no report comes before either.
        self.processor.on_acks(positions, error)

    def _fail(self, exc: BaseException) -> None:
        self.processor.fail(exc)

    async def run(self, stop: asyncio.Event, wire: ReplicationStream) -> None:
        """Stream the slot on ``wire`` (the reader's replication connection, its lock
        held) until stop; raises what ended the session."""
        cfg = self.cfg
        resume = await self.committer.open(self.state.exists)
        try:
            self._processor = Processor(
                cfg,
                self.producer,
                self.checkpointer,
                add=resume or self.producer.direct_add,
                delivered=self.committer.delivered,
                ack_hook=self._ack_hook,
            )
            # Caught up with the server (nothing to read): send what is held back, commit.
            wire.on_idle = self.committer.idle
            if not self.state.exists:
                consistent, self.stats.snapshot_rows = await create_slot(
                    wire,
                    cfg.dsn,
                    cfg.slot,
                    initial_snapshot=cfg.initial_snapshot,
                    send=self.processor.send,
                    snapshot_sent=self._snapshot_sent,
                )
                # Nothing below the consistent point is streamed: as good as confirmed.
                self.checkpointer.tracker.note_keepalive(consistent)
            listener = Listener(wire, cfg.slot)
            command, binary = start_replication_command(cfg, wire.server_version)
            await listener.start(command)
            self.stats.active = True
            self.stats.waiting_for_slot_pid = None
            log.info(
                "slot=%s streaming from lsn=%s into topic %s (pgoutput %s columns)",
                cfg.slot,
                self.checkpointer.tracker.flushed,
                cfg.topic,
                "binary" if binary else "text",
            )
            self.committer.start()
            await self._stream(listener, stop)
        finally:
            self.stats.active = False
            await self.committer.close()

    async def _snapshot_sent(self) -> None:
        """The whole snapshot in one Kafka transaction, committed."""
        await self.producer.flush()
        self.processor.check()
        await self.committer.commit()

    async def _stream(self, listener: Listener, stop: asyncio.Event) -> None:
        """Frames -> records until stop, a status update every ``status_interval``."""
        # What exists now (modules, clients, settings) lives as long as the process: moved
        # out of the collector's way, full collections during the stream only walk the
        # stream's own objects (docs/benchmarks.md, "Figures the code used to quote").
        gc.collect()
        gc.freeze()
        processor = self.processor
        checkpointer = self.checkpointer
        interval = self.cfg.status_interval
        next_status = time.monotonic() + interval
        while not stop.is_set():
            processor.check()
            frames = await listener.frames(timeout=max(0.0, next_status - time.monotonic()))
            await processor.handle(frames, listener)
            if time.monotonic() >= next_status:
                await checkpointer.status(listener, processor.loop.received)
                next_status = time.monotonic() + interval
        await self.producer.flush()
        await self.committer.commit()
        await checkpointer.status(listener, processor.loop.received)
