"""The session's Kafka transactions: start-up (fencing, resume positions) and commits.

Order of a session's start (DESIGN invariants 6 and 8), with the slot's lock held:

1. the transactional producer starts: the broker bumps the epoch of the reader's
   transactional id, aborts what a previous reader left open and refuses its later writes
   (a frozen former reader can no longer write to the topic);
2. the last committed position of each partition is read (``read_committed``): nobody
   else can add to it any more, so :class:`~replication.resume.ResumeFilter` drops exactly
   the resent events Kafka already holds;
3. the stream runs; a delivered event counts for the flush tracker (and so the slot)
   only once the transaction holding it is committed.

Commits: when the reader has caught up (its socket is empty: the same moment it stops
holding batches back) and at least every ``commit_interval`` while it drains a backlog.
A commit waits only for what was handed to the producer; the frame loop goes on adding
events meanwhile, they go into the next transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from replication import killpoint
from replication.batcher import AcksCallback
from replication.kafka_client import client_options
from replication.lsn import Position
from replication.ports import RecordProducer, ResumeReader
from replication.reader_config import ReaderConfig
from replication.resume import ResumeFilter, read_last_positions, resume_positions

log = logging.getLogger(__name__)

# How long reading the resume positions may take before the session is retried.
RESUME_READ_TIMEOUT = 60.0


def kafka_resume_reader(cfg: ReaderConfig) -> ResumeReader:
    """Where each partition of ``cfg.topic`` ends, read with a ``read_committed`` consumer."""

    async def read(partitions: int) -> dict[int, Position | None]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=cfg.kafka_bootstrap,
            isolation_level="read_committed",
            enable_auto_commit=False,
            # Large fetches: the end of a partition may be a long aborted transaction
            # (the former reader's), which the consumer has to read past.
            max_partition_fetch_bytes=16 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
            **client_options(cfg.kafka_security),
        )
        await consumer.start()
        try:
            async with asyncio.timeout(RESUME_READ_TIMEOUT):
                return await read_last_positions(consumer, cfg.topic, partitions)
        finally:
            await consumer.stop()

    return read


class Committer:
    """Owns the session producer's transactions and when delivered events reach the
    tracker (``tracker_acks``: the checkpointer's ``tracker.ack_streamed``).

    ``dropped`` takes the resent events the resume filter drops (already in Kafka: as
    good as acked); ``fail`` takes an error of the background commits, which the stream
    raises.
    """

    def __init__(
        self,
        config: ReaderConfig,
        producer: RecordProducer,
        *,
        tracker_acks: Callable[[list[Position]], None],
        dropped: AcksCallback,
        fail: Callable[[BaseException], None],
        read_resume: ResumeReader | None = None,
    ) -> None:
        self.cfg, self.producer = config, producer
        self._tracker_acks, self._dropped, self._fail = tracker_acks, dropped, fail
        self._read_resume = read_resume or kafka_resume_reader(config)
        self._uncommitted: list[Position] = []
        self._wanted = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.resume: ResumeFilter | None = None

    @property
    def transactional(self) -> bool:
        return self.producer.transactional_id is not None

    async def open(self, resuming: bool) -> ResumeFilter | None:
        """Start the producer (fencing the previous reader); when ``resuming`` an existing
        slot, read where each partition ends: the filter of what Kafka already holds, to
        put in front of the producer's ``direct_add`` (None: nothing to filter)."""
        started = time.monotonic()
        await self.producer.start()
        if self.transactional:
            log.info(
                "slot=%s transactional id %s ready in %.1fs: any former reader is fenced",
                self.cfg.slot,
                self.producer.transactional_id,
                time.monotonic() - started,
            )
        if resuming:
            started = time.monotonic()
            self.resume = await self._resume_filter()
            log.info(
                "slot=%s resume positions read in %.1fs",
                self.cfg.slot,
                time.monotonic() - started,
            )
        return self.resume

    async def _resume_filter(self) -> ResumeFilter | None:
        cfg = self.cfg
        partitions = self.producer.partitions
        last = await self._read_resume(partitions)
        resume = resume_positions(last, partitions)
        if all(pos is None for pos in resume):
            log.info("slot=%s topic %s holds nothing of the stream yet", cfg.slot, cfg.topic)
            return None
        log.info(
            "slot=%s resuming: topic %s already holds up to %s",
            cfg.slot,
            cfg.topic,
            ", ".join(f"[{p}] {pos}" for p, pos in enumerate(resume) if pos is not None),
        )
        return ResumeFilter(resume, self.producer.direct_add, self._drop, self._passed)

    def _drop(self, position: Position) -> None:
        # Already in Kafka (committed): delivered, as far as the tracker is concerned.
        self._dropped([position], None)

    def _passed(self) -> None:
        if self.resume is not None:
            log.info(
                "slot=%s past the resume positions (up to %s): %d event(s) already in "
                "topic %s were not sent again",
                self.cfg.slot,
                self.resume.horizon,
                self.resume.dropped,
                self.cfg.topic,
            )

    def delivered(self, positions: list[Position]) -> None:
        """Kafka acked these events: durable now, or once their transaction commits."""
        if self.transactional:
            self._uncommitted.extend(positions)
        else:
            self._tracker_acks(positions)  # snapshot rows are skipped

    def idle(self) -> None:
        """The reader has caught up: hand over what is held back, and commit it."""
        self.producer.release()
        if self.transactional:
            self._wanted.set()

    def start(self) -> None:
        """Start committing in the background (while the stream runs)."""
        if self.transactional and self._task is None:
            self._task = asyncio.create_task(self._run(), name="reader-commits")

    async def _run(self) -> None:
        """Group commit: once the reader has caught up, commit, and again at once while
        anything came in (or was still held in a batch) during the commit; under a
        backlog (never idle), every ``commit_interval``."""
        interval = self.cfg.commit_interval
        while True:
            idle = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wanted.wait(), interval)
                idle = True
            self._wanted.clear()
            try:
                await self.commit()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the session raises it (replication.retry decides)
                self._fail(exc)
                return
            if idle and self._pending():
                self._wanted.set()

    def _pending(self) -> bool:
        return bool(self._uncommitted) or self.producer.uncommitted

    async def commit(self) -> None:
        """Commit what was handed to the producer so far (call ``producer.flush()``
        first to include everything added); raises on failure."""
        if not self.transactional:
            return
        async with self._lock:
            if not self._pending():
                return
            await self.producer.commit()
            killpoint.reached("reader.after_commit")  # in Kafka, not yet confirmed to the slot
            # Every ack so far is of a batch of the transaction just committed: the
            # gate let no batch of the next one through before commit() returned.
            done, self._uncommitted = self._uncommitted, []
            self._tracker_acks(done)

    async def close(self) -> None:
        """Stop committing; abort what was not committed (a session that failed), stop
        the producer."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        producer = self.producer
        try:
            if not self.transactional:
                await asyncio.wait_for(producer.flush(), 30)
            elif self._uncommitted or producer.uncommitted:
                await asyncio.wait_for(producer.abort(), 5)
        except (TimeoutError, KafkaError, OSError) as exc:
            log.warning("producer close on session end: %r", exc)
        try:
            await asyncio.wait_for(producer.stop(), 30)
        except (TimeoutError, KafkaError, OSError) as exc:
            log.warning("producer stop on session end: %r", exc)
