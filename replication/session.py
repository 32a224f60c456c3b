"""One replication session: the COPY_BOTH stream of the slot into the Kafka topic.

Order of duties per transaction: Begin announces its commit LSN (the position of all its
events is known up front, so sends are pipelined), each Insert into ``domain_events`` is
sent with key = stream_id, the Commit registers the event count with the tracker, and
Kafka's acks let the tracker advance. Status updates report ``tracker.flushable()``: the
slot never confirms WAL whose events Kafka does not hold (DESIGN invariant 2).
:mod:`replication.reader` runs sessions, one after another, and decides about retries.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from replication import killpoint
from replication.committer import Committer
from replication.deadletter_store import DeadLetter
from replication.decoder import decode_pgoutput, encode_standby_status, parse_copy_data
from replication.errors import DecodeError, DeliveryError, SlotInUse
from replication.hotpath import INSERT, FrameLoop, payload_tag, wal_end
from replication.hotpath import insert as hot_insert
from replication.kafka_client import PLAINTEXT, KafkaSecurity
from replication.lsn import LSN, Position, lsn_from_uint64
from replication.messages import PrimaryKeepalive, Relation, TupleData
from replication.producer import EventProducer, is_too_large, transactional_id
from replication.reader_dlq import (
    READER_REASON_KIND,
    reader_dead_letter_value,
    send_reader_dead_letter,
)
from replication.rows import RelationCache
from replication.slot import (
    SlotState,
    record_snapshot,
)
from replication.snapshot import copy_snapshot
from replication.tracker import FlushTracker
from replication.values import CLAIM_CHECK_HEADER, ValueEncoder
from replication.wire import ReplicationWire, ServerError

log = logging.getLogger(__name__)

_ACTIVE_PID = re.compile(r"active for PID (\d+)", re.I)


@dataclass(frozen=True, slots=True)
class ReaderConfig:
    """What the reader needs; built from pipeline.config.Settings by the caller."""

    dsn: str
    kafka_bootstrap: str
    topic: str = "domain-events"
    partitions: int = 8
    replication_factor: int = 1
    slot: str = "pipeline"
    publication: str = "pipeline_domain_events"
    dead_letter_topic: str = "domain-events-dlq"
    initial_snapshot: bool = True
    status_interval: float = 1.0
    max_in_flight: int = 50_000
    # While the reader is behind (its socket never empty), Kafka batches are held back up
    # to this long or until they fill (replication.batcher): fewer, larger batches.
    batch_linger: float = 0.05
    retry_min: float = 0.5
    retry_max: float = 15.0
    # pgoutput's binary mode (PostgreSQL 14+): columns in their types' send formats, which
    # the walsender produces with less CPU than text output (the drain's ceiling).
    binary: bool = True
    # Names this reader in application_name (pipeline-reader/<instance>); empty: the
    # PIPELINE_INSTANCE_ID variable, else host-pid (replication.reader.application_name).
    instance_id: str = ""
    # Kafka transactions: a frozen former reader is fenced, consumers read committed only,
    # and a restarted reader's resume positions are exact (DESIGN invariants 6 and 8).
    # Off: an idempotent producer only (benchmarks compare the two).
    transactional: bool = True
    # SASL / TLS of the reader's Kafka clients (replication.kafka_client).
    kafka_security: KafkaSecurity = PLAINTEXT


# The first PostgreSQL version whose pgoutput accepts ``binary 'true'``.
BINARY_MIN_SERVER_VERSION = 140000


def start_replication_command(config: ReaderConfig, server_version: int) -> tuple[str, bool]:
    """The START_REPLICATION command for this config and server, and whether it asks for
    binary columns (only where the server supports it; older servers get text)."""
    binary = config.binary and server_version >= BINARY_MIN_SERVER_VERSION
    options = f"proto_version '1', publication_names '{config.publication}'"
    if binary:
        options += ", binary 'true'"
    return f"START_REPLICATION SLOT {config.slot} LOGICAL 0/0 ({options})", binary


@dataclass(slots=True)
class ReaderStats:
    """Counters an exporter (pipeline.metrics) can read; plain numbers, no I/O."""

    active: bool = False
    events_read: int = 0
    events_acked: int = 0
    dead_lettered: int = 0
    # Rows set aside whose dead-letter copy could not be sent (kept, published = false).
    dead_letters_unsent: int = 0
    snapshot_rows: int = 0
    transactions: int = 0
    confirmed_lsn: LSN = field(default_factory=lambda: LSN.ZERO)
    server_wal_end: LSN = field(default_factory=lambda: LSN.ZERO)
    sessions: int = 0
    waiting_for_slot_pid: int | None = None
    # Transactions received whose events Kafka has not all acked, as of the last status
    # update: 0 means the reader has handed on everything the server sent so far.
    pending_transactions: int = 0

    @property
    def backlog_bytes(self) -> int:
        """How far behind the server's WAL end this reader is, for readiness.

        With nothing pending the reader has processed all the server sent (the rest of
        the WAL belongs to other tables or databases), so it is not behind at all.
        """
        if self.pending_transactions == 0:
            return 0
        return max(0, int(self.server_wal_end) - int(self.confirmed_lsn))


AckHook = Callable[[Position, BaseException | None, Callable[[], None]], None]


class Session:
    def __init__(
        self,
        config: ReaderConfig,
        stats: ReaderStats,
        state: SlotState,
        ack_hook: AckHook | None = None,
    ) -> None:
        self.cfg = config
        self.stats = stats
        self._ack_hook = ack_hook
        self.state = state
        self.tracker = FlushTracker(state.confirmed_flush or LSN.ZERO)
        self.relations = RelationCache()
        self.encoder = ValueEncoder(self.relations)
        self.failure: BaseException | None = None
        self.drained = asyncio.Event()
        self.producer = EventProducer(
            self.cfg.kafka_bootstrap,
            self.cfg.topic,
            self._on_acks,
            linger=self.cfg.batch_linger,
            transactional_id=(
                transactional_id(self.cfg.topic, self.cfg.slot) if self.cfg.transactional else None
            ),
            security=self.cfg.kafka_security,
        )
        # Begin/Insert/Commit frames -> tracker and producer; holds the in-flight count
        # and the highest wal_end received.
        self.loop = FrameLoop(
            self.encoder.encode, self.producer.add, self.tracker, self.cfg.max_in_flight
        )
        self.sent_flush = LSN.ZERO
        # The producer's transactions: start-up (fencing), resume positions, commits.
        self.committer = Committer(self)

    @property
    def in_flight(self) -> int:
        """Events handed to the producer and not yet acknowledged (or failed)."""
        return self.loop.in_flight

    @in_flight.setter
    def in_flight(self, value: int) -> None:
        self.loop.in_flight = value

    # -- Kafka acks ---------------------------------------------------------------------

    def _on_acks(self, positions: list[Position], error: BaseException | None) -> None:
        hook = self._ack_hook
        if hook is None:
            self._apply_acks(positions, error)
            return
        for pos in positions:
            hook(pos, error, functools.partial(self._apply_acks, [pos], error))

    def _apply_acks(self, positions: list[Position], error: BaseException | None) -> None:
        self.in_flight -= len(positions)
        if self.in_flight < self.cfg.max_in_flight:
            self.drained.set()
        if error is None:
            self.committer.delivered(positions)  # to the tracker now, or at the commit
            self.stats.events_acked += len(positions)
            return
        if self.failure is None:
            hint = " (larger than the topic accepts)" if is_too_large(error) else ""
            self.failure = DeliveryError(
                f"Kafka did not accept the event at {positions[0]}{hint}: {error!r}"
            )

    async def _send(
        self,
        pos: Position,
        key: bytes,
        value: bytes,
        headers: list[tuple[str, bytes]],
        topic: str | None = None,
    ) -> None:
        if self.failure is not None:
            raise self.failure
        await self._room()
        self.in_flight += 1
        if topic is None:
            # loop.add: the resume filter while the stream is behind what Kafka holds
            # (a large row sent from the slow path is filtered like any other), then
            # the batcher's add.
            self.loop.add(pos, key, value, headers)
        else:
            await self.producer.send(pos, key, value, headers, topic)
        self.stats.events_read += 1

    async def _room(self) -> None:
        """Backpressure: wait while ``max_in_flight`` events are unacknowledged."""
        while self.in_flight >= self.cfg.max_in_flight:
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
        self.in_flight += 1
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
        self._on_acks([pos], None)  # set aside: the slot moves past it

    # -- the stream -----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, wire: ReplicationWire) -> None:
        """Stream the slot on ``wire`` (the reader's replication connection, its lock
        held) until stop; raises what ended the session."""
        cfg = self.cfg
        await self.committer.open(self.state.exists)
        try:
            # Caught up with the server (nothing to read): send what is held back, commit.
            wire.on_idle = self.committer.idle
            if not self.state.exists:
                await self._create_slot(wire)
            command, binary = start_replication_command(cfg, wire.conn.info.server_version)
            try:
                await wire.start_copy(command)
            except ServerError as exc:
                if exc.sqlstate == "55006":  # object_in_use: another walsender has the slot
                    match = _ACTIVE_PID.search(str(exc))
                    raise SlotInUse(cfg.slot, int(match[1]) if match else None) from exc
                raise
            self.stats.active = True
            self.stats.waiting_for_slot_pid = None
            log.info(
                "slot=%s streaming from lsn=%s into topic %s (pgoutput %s columns)",
                cfg.slot,
                self.tracker.flushed,
                cfg.topic,
                "binary" if binary else "text",
            )
            self.committer.start()
            await self._stream(wire, stop)
        finally:
            self.stats.active = False
            await self.committer.close()

    async def _create_slot(self, wire: ReplicationWire) -> None:
        cfg = self.cfg
        mode = "export" if cfg.initial_snapshot else "nothing"
        rows = await wire.query(
            f"CREATE_REPLICATION_SLOT {cfg.slot} LOGICAL pgoutput (SNAPSHOT '{mode}')"
        )
        consistent = LSN.parse(rows[0][1] or "0/0")
        log.info("created slot=%s at lsn=%s", cfg.slot, consistent)
        copied = 0
        if cfg.initial_snapshot and rows[0][2]:
            # The exported snapshot lives until the next command on this connection.
            copied = await copy_snapshot(cfg.dsn, rows[0][2], self._send)
            await self.producer.flush()
            if self.failure is not None:
                raise self.failure
            await self.committer.commit()  # the whole snapshot in one Kafka transaction
            log.info("slot=%s initial snapshot: %d rows in Kafka", cfg.slot, copied)
        self.stats.snapshot_rows = copied
        await record_snapshot(cfg.dsn, cfg.slot, consistent, copied)
        self.tracker = self.loop.tracker = FlushTracker(consistent)

    async def _stream(self, wire: ReplicationWire, stop: asyncio.Event) -> None:
        """Frames -> events until stop. Begin, Insert and Commit (nearly all the traffic)
        are handled by ``replication.hotpath.FrameLoop`` without awaiting; the frames it
        stops at (keepalives, Relation, a row to dead-letter, backpressure) here."""
        # What exists now (modules, clients, settings) lives as long as the process: moved
        # out of the collector's way, full collections during the stream only walk the
        # stream's own objects (measured: ~50 ms less per full collection).
        gc.collect()
        gc.freeze()
        interval = self.cfg.status_interval
        next_status = time.monotonic() + interval
        loop = self.loop
        stats = self.stats
        while not stop.is_set():
            if self.failure is not None:
                raise self.failure
            frames = await wire.read_batch(timeout=max(0.0, next_status - time.monotonic()))
            i, n = 0, len(frames)
            while i < n:
                # Delivery reports arrive only while awaiting: one check per stretch.
                if self.failure is not None:
                    raise self.failure
                events, transactions = loop.events, loop.transactions
                i = loop.run(frames, i)
                stats.events_read += loop.events - events
                stats.transactions += loop.transactions - transactions
                if i < n and await self._slow_frame(wire, frames[i]):
                    i += 1  # handled; else (backpressure) the loop takes it up again
            if time.monotonic() >= next_status:
                await self._status(wire)
                next_status = time.monotonic() + interval
        await self.producer.flush()
        await self.committer.commit()
        await self._status(wire)

    async def _slow_frame(self, wire: ReplicationWire, frame: bytes) -> bool:
        """A frame :class:`~replication.hotpath.FrameLoop` stopped at; False when it is an
        Insert held back by backpressure (waited for, still to be handled)."""
        loop = self.loop
        tag = payload_tag(frame)
        if tag == INSERT:
            if not loop.in_txn:
                raise DecodeError("Insert outside a transaction", kind="Insert")
            if loop.in_flight >= loop.max_in_flight:
                await self._room()
                return False
            relation_id, tup = hot_insert(frame)
            pos = Position(loop.commit_lsn, loop.idx)
            try:
                key, value, claim_checked = self.encoder.encode_sized(relation_id, tup)
            except DecodeError as exc:
                await self._dead_letter(pos, loop.xid, relation_id, tup, exc)
            else:
                # A large frame (FrameLoop leaves those to this path): sent here, as a
                # claim check when the record would exceed what the topic takes.
                del tup
                headers = loop.headers(pos.idx)
                if claim_checked:
                    headers.append(CLAIM_CHECK_HEADER)
                    log.info(
                        "event at lsn=%s idx=%d is larger than a record may be: sent as a "
                        "claim check (consumers read it from domain_events)",
                        pos.commit_lsn,
                        pos.idx,
                    )
                await self._send(pos, key, value, headers)
                loop.events += 1
            loop.idx += 1
        else:
            msg = parse_copy_data(frame)
            if isinstance(msg, PrimaryKeepalive):
                self.stats.server_wal_end = msg.wal_end
                if not loop.in_txn:
                    self.tracker.note_keepalive(msg.wal_end)
                if msg.reply_requested:
                    await self._status(wire)
                return True
            pg = decode_pgoutput(msg.payload)
            if isinstance(pg, Relation):
                self.relations.add(pg)
        loop.received = max(loop.received, wal_end(frame))
        return True

    async def _status(self, wire: ReplicationWire) -> None:
        flush = self.tracker.flushable()
        if flush > self.sent_flush:
            killpoint.reached("reader.after_ack_before_flush")
        write = max(lsn_from_uint64(self.loop.received), flush)
        await wire.write(encode_standby_status(write, flush, flush))
        self.sent_flush = flush
        self.stats.confirmed_lsn = flush
        self.stats.pending_transactions = self.tracker.pending_transactions
