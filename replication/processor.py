"""The processor: frames to Kafka records. Begin, Insert and Commit (nearly all the
traffic) go through :class:`~replication.frame_loop.FrameLoop` without awaiting; here are
the frames it stops at (Relation, keepalives, a row it could not convert, a large row,
backpressure), the dead-letter path, and Kafka's delivery reports.

Order of duties per transaction: Begin announces its commit LSN (the position of all its
events is known up front, so sends are pipelined), each Insert into ``domain_events`` is
handed to the producer with key = stream_id, the Commit registers the event count with
the tracker, and Kafka's acks (through the committer) let the tracker advance.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable

from replication.checkpointer import Checkpointer
from replication.deadletter_store import DeadLetter
from replication.decoder import decode_pgoutput, parse_copy_data
from replication.errors import DecodeError, DeliveryError
from replication.frame_loop import INSERT, Add, FrameLoop, Headers, payload_tag, wal_end
from replication.frame_loop import insert as hot_insert
from replication.listener import Listener
from replication.lsn import Position
from replication.messages import PrimaryKeepalive, Relation, TupleData
from replication.ports import RecordProducer
from replication.producer import is_too_large
from replication.reader_config import AckHook, ReaderConfig
from replication.reader_dlq import (
    READER_REASON_KIND,
    reader_dead_letter_value,
    send_reader_dead_letter,
)
from replication.record_value import CLAIM_CHECK_HEADER
from replication.rows import RelationCache
from replication.value_encoder import ValueEncoder

log = logging.getLogger(__name__)


class Processor:
    """Turns one session's frames into records for ``producer``, ``add`` being where a
    record of the topic goes (the batcher's ``add``, or the resume filter in front of
    it); reports Kafka's acks to ``delivered`` (the committer)."""

    def __init__(
        self,
        config: ReaderConfig,
        producer: RecordProducer,
        checkpointer: Checkpointer,
        *,
        add: Add,
        delivered: Callable[[list[Position]], None],
        ack_hook: AckHook | None = None,
    ) -> None:
        self.cfg, self.producer, self.checkpointer = config, producer, checkpointer
        self.stats = checkpointer.stats
        self._delivered, self._ack_hook = delivered, ack_hook
        self.relations = RelationCache()
        self.encoder = ValueEncoder(self.relations)
        self.failure: BaseException | None = None
        self.drained = asyncio.Event()
        # Begin/Insert/Commit frames -> tracker and producer; holds the in-flight count
        # and the highest wal_end received.
        self.loop = FrameLoop(self.encoder.encode, add, checkpointer.tracker, config.max_in_flight)

    def check(self) -> None:
        """Raise what ended the session from a callback (a delivery, a commit)."""
        if self.failure is not None:
            raise self.failure

    def fail(self, exc: BaseException) -> None:
        """Record the first error of a callback; the stream raises it at its next check."""
        if self.failure is None:
            self.failure = exc

    # -- Kafka acks ---------------------------------------------------------------------

    def on_acks(self, positions: list[Position], error: BaseException | None) -> None:
        """A delivery report (or a resent event dropped as already in Kafka)."""
        hook = self._ack_hook
        if hook is None:
            self._apply_acks(positions, error)
            return
        for pos in positions:
            hook(pos, error, functools.partial(self._apply_acks, [pos], error))

    def _apply_acks(self, positions: list[Position], error: BaseException | None) -> None:
        loop = self.loop
        loop.in_flight -= len(positions)
        if loop.in_flight < loop.max_in_flight:
            self.drained.set()
        if error is None:
            self._delivered(positions)  # to the tracker now, or at the commit
            self.stats.events_acked += len(positions)
            return
        hint = " (larger than the topic accepts)" if is_too_large(error) else ""
        self.fail(
            DeliveryError(f"Kafka did not accept the event at {positions[0]}{hint}: {error!r}")
        )

    # -- sending ------------------------------------------------------------------------

    async def send(self, pos: Position, key: bytes, value: bytes, headers: Headers) -> None:
        """One record for the topic, from outside the frame loop (a large row, the
        initial snapshot); waits while ``max_in_flight`` events are unacknowledged."""
        self.check()
        await self._room()
        self.loop.in_flight += 1
        # The frame loop's add: the resume filter while the stream is behind what Kafka
        # holds (a large row is filtered like any other), else the batcher's.
        self.loop.add(pos, key, value, headers)
        self.stats.events_read += 1

    async def _room(self) -> None:
        """Backpressure: wait while ``max_in_flight`` events are unacknowledged."""
        loop = self.loop
        while loop.in_flight >= loop.max_in_flight:
            self.producer.release()  # the acks waited for must not wait for more events
            self.drained.clear()
            await self.drained.wait()

    async def _dead_letter(
        self, pos: Position, xid: int, relation_id: int, tup: TupleData, exc: DecodeError
    ) -> None:
        """A row that cannot be converted goes to the dead-letter topic once, with its reason
        and position (:mod:`replication.deadletter_store`); sent or not, it then counts as
        delivered and the stream goes on: one row never holds the slot back."""
        value, stream_id, event_id = reader_dead_letter_value(
            self.relations, pos=pos, xid=xid, relation_id=relation_id, tup=tup, exc=exc
        )
        letter = DeadLetter(
            position=pos,
            reason_kind=READER_REASON_KIND,
            reason=str(exc),
            source="reader",
            event_id=event_id,
            key=stream_id.encode(),
            value=value,
        )
        await self._room()
        self.loop.in_flight += 1
        self.stats.events_read += 1
        error = await send_reader_dead_letter(
            self.cfg.dsn, letter, self.producer, self.cfg.dead_letter_topic, xid
        )
        if error is not None:
            self.stats.dead_letters_unsent += 1
        else:
            self.stats.dead_lettered += 1
            log.error(
                "cannot convert the row at lsn=%s idx=%d (%s): dead-lettered to %s key=%s",
                pos.commit_lsn,
                pos.idx,
                exc,
                self.cfg.dead_letter_topic,
                letter.dead_letter_key,
            )
        self.on_acks([pos], None)  # set aside: the slot moves past it

    # -- frames -------------------------------------------------------------------------

    async def handle(self, frames: list[bytes], listener: Listener) -> None:
        """Every frame of a batch, in order."""
        loop = self.loop
        stats = self.stats
        i, n = 0, len(frames)
        while i < n:
            # Delivery reports arrive only while awaiting: one check per stretch.
            self.check()
            events, transactions = loop.events, loop.transactions
            i = loop.run(frames, i)
            stats.events_read += loop.events - events
            stats.transactions += loop.transactions - transactions
            if i < n and await self._slow_frame(frames[i], listener):
                i += 1  # handled; else (backpressure) the loop takes it up again

    async def _slow_frame(self, frame: bytes, listener: Listener) -> bool:
        """A frame the loop stopped at; False when it is an Insert held back by
        backpressure (waited for, still to be handled)."""
        loop = self.loop
        if payload_tag(frame) == INSERT:
            if not loop.in_txn:
                raise DecodeError("Insert outside a transaction", kind="Insert")
            rejected = loop.take_rejected()
            if rejected is not None:  # the loop could not convert it: dead-letter it
                relation_id, tup, exc = rejected
                pos = Position(loop.commit_lsn, loop.idx)
                await self._dead_letter(pos, loop.xid, relation_id, tup, exc)
                loop.idx += 1
            elif loop.in_flight >= loop.max_in_flight:
                await self._room()
                return False
            else:
                await self._large_row(frame)
        else:
            msg = parse_copy_data(frame)
            if isinstance(msg, PrimaryKeepalive):
                await self.checkpointer.keepalive(msg, loop.in_txn, loop.received, listener)
                return True
            pg = decode_pgoutput(msg.payload)
            if isinstance(pg, Relation):
                self.relations.add(pg)
        loop.received = max(loop.received, wal_end(frame))
        return True

    async def _large_row(self, frame: bytes) -> None:
        """An Insert frame the loop leaves to this path for its size: sent as a claim
        check when the record would exceed what the topic takes."""
        loop = self.loop
        relation_id, tup = hot_insert(frame)
        pos = Position(loop.commit_lsn, loop.idx)
        try:
            key, value, event_type, claim_checked = self.encoder.encode_sized(relation_id, tup)
        except DecodeError as exc:
            await self._dead_letter(pos, loop.xid, relation_id, tup, exc)
        else:
            del tup
            headers = loop.headers(pos.idx, event_type)
            if claim_checked:
                headers.append(CLAIM_CHECK_HEADER)
                log.info(
                    "event at lsn=%s idx=%d is larger than a record may be: sent as a "
                    "claim check (consumers read it from domain_events)",
                    pos.commit_lsn,
                    pos.idx,
                )
            await self.send(pos, key, value, headers)
            loop.events += 1
        loop.idx += 1
