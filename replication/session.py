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
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
import psycopg

from replication import killpoint
from replication.decoder import decode_pgoutput, encode_standby_status, parse_copy_data
from replication.errors import DecodeError, DeliveryError, SlotInUse
from replication.hotpath import (
    BEGIN,
    COMMIT,
    INSERT,
    CommitTimeText,
    lsn_text,
    payload_tag,
    wal_end,
)
from replication.hotpath import begin as hot_begin
from replication.hotpath import commit as hot_commit
from replication.hotpath import insert as hot_insert
from replication.lsn import LSN, Position, lsn_from_uint64
from replication.messages import PrimaryKeepalive, Relation, TupleData
from replication.producer import EventProducer, is_too_large
from replication.rows import RelationCache
from replication.slot import (
    SlotState,
    record_snapshot,
    translate_connect_error,
)
from replication.snapshot import copy_snapshot
from replication.tracker import FlushTracker
from replication.values import ValueEncoder
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
    retry_min: float = 0.5
    retry_max: float = 15.0


@dataclass(slots=True)
class ReaderStats:
    """Counters an exporter (pipeline.metrics) can read; plain numbers, no I/O."""

    active: bool = False
    events_read: int = 0
    events_acked: int = 0
    dead_lettered: int = 0
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

_NO_HEADER = ("", b"")


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
        self.in_flight = 0
        self.drained = asyncio.Event()
        self.producer = EventProducer(self.cfg.kafka_bootstrap, self.cfg.topic, self._on_acks)
        self.received = 0  # the highest wal_end of the XLogData frames read
        self.sent_flush = LSN.ZERO

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
            ack = self.tracker.ack
            for pos in positions:
                if pos.commit_lsn != LSN.ZERO:  # snapshot rows are not in the slot's stream
                    ack(pos)
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
            self.producer.add(pos, key, value, headers)
        else:
            await self.producer.send(pos, key, value, headers, topic)
        self.stats.events_read += 1

    async def _room(self) -> None:
        """Backpressure: wait while ``max_in_flight`` events are unacknowledged."""
        while self.in_flight >= self.cfg.max_in_flight:
            self.drained.clear()
            await self.drained.wait()

    async def _dead_letter(
        self, pos: Position, xid: int, relation_id: int, tup: TupleData, exc: DecodeError
    ) -> None:
        """A row that cannot be converted goes to the dead-letter topic, with its reason and
        position; once Kafka holds it there, it counts as delivered and the stream goes on."""
        try:
            relation = self.relations.get(relation_id)
            columns: dict[str, str | None] = {
                col.name: tup.text(i) for i, col in enumerate(relation.columns)
            }
            table = f"{relation.namespace}.{relation.name}"
        except (DecodeError, IndexError, UnicodeDecodeError):
            columns, table = {}, f"relation {relation_id}"
        commit_lsn, idx = pos.commit_lsn, pos.idx
        value = orjson.dumps(
            {
                "reason": str(exc),
                "table": table,
                "commit_lsn": str(commit_lsn),
                "idx": idx,
                "xid": xid,
                "columns": columns,
            }
        )
        log.error(
            "cannot convert the row at lsn=%s idx=%d (%s): dead-lettered to %s",
            commit_lsn,
            idx,
            exc,
            self.cfg.dead_letter_topic,
        )
        self.stats.dead_lettered += 1
        await self._send(
            pos,
            (columns.get("stream_id") or "").encode(),
            value,
            [
                ("reason", str(exc).encode()),
                ("source", b"reader"),
                ("commit_lsn", str(commit_lsn).encode()),
                ("idx", str(idx).encode()),
                ("xid", str(xid).encode()),
            ],
            self.cfg.dead_letter_topic,
        )

    # -- the stream -----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        cfg = self.cfg
        try:
            conn = await psycopg.AsyncConnection.connect(
                cfg.dsn, autocommit=True, replication="database"
            )
        except psycopg.Error as exc:
            raise translate_connect_error(exc) from exc
        await self.producer.start()
        try:
            wire = ReplicationWire(conn)
            if not self.state.exists:
                await self._create_slot(wire)
            try:
                await wire.start_copy(
                    f"START_REPLICATION SLOT {cfg.slot} LOGICAL 0/0 "
                    f"(proto_version '1', publication_names '{cfg.publication}')"
                )
            except ServerError as exc:
                if exc.sqlstate == "55006":  # object_in_use: another walsender has the slot
                    match = _ACTIVE_PID.search(str(exc))
                    raise SlotInUse(cfg.slot, int(match[1]) if match else None) from exc
                raise
            self.stats.active = True
            self.stats.waiting_for_slot_pid = None
            log.info(
                "slot=%s streaming from lsn=%s into topic %s",
                cfg.slot,
                self.tracker.flushed,
                cfg.topic,
            )
            await self._stream(wire, stop)
        finally:
            self.stats.active = False
            try:
                await asyncio.wait_for(self.producer.flush(), 30)
            except (TimeoutError, OSError) as exc:
                log.warning("producer flush on session end failed: %s", exc)
            await self.producer.stop()
            await conn.close()

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
            log.info("slot=%s initial snapshot: %d rows in Kafka", cfg.slot, copied)
        self.stats.snapshot_rows = copied
        await record_snapshot(cfg.dsn, cfg.slot, consistent, copied)
        self.tracker = FlushTracker(consistent)

    async def _stream(self, wire: ReplicationWire, stop: asyncio.Event) -> None:
        """Frames -> events until stop. Begin, Insert and Commit (nearly all the traffic)
        are read by ``replication.hotpath`` into ints; the rest by the decoder."""
        interval = self.cfg.status_interval
        max_in_flight = self.cfg.max_in_flight
        next_status = time.monotonic() + interval
        tracker = self.tracker
        encode = self.encoder.encode
        add = self.producer.add
        stats = self.stats
        commit_time_text = CommitTimeText()
        in_txn = False
        commit_lsn = LSN.ZERO
        xid = idx = 0
        # The headers every event of the transaction shares, built once at its Begin.
        commit_lsn_h = xid_h = commit_ts_h = _NO_HEADER
        while not stop.is_set():
            if self.failure is not None:
                raise self.failure
            frames = await wire.read_batch(timeout=max(0.0, next_status - time.monotonic()))
            for frame in frames:
                if self.failure is not None:
                    raise self.failure
                tag = payload_tag(frame)
                if tag == INSERT:
                    if not in_txn:
                        raise DecodeError("Insert outside a transaction", kind="Insert")
                    relation_id, tup = hot_insert(frame)
                    try:
                        key, value = encode(relation_id, tup)
                    except DecodeError as exc:
                        await self._dead_letter(
                            Position(commit_lsn, idx), xid, relation_id, tup, exc
                        )
                    else:
                        if self.in_flight >= max_in_flight:
                            await self._room()
                        self.in_flight += 1
                        add(
                            Position(commit_lsn, idx),
                            key,
                            value,
                            [commit_lsn_h, ("idx", b"%d" % idx), xid_h, commit_ts_h],
                        )
                        stats.events_read += 1
                    idx += 1
                elif tag == BEGIN:
                    final_lsn, commit_us, xid = hot_begin(frame)
                    commit_lsn = lsn_from_uint64(final_lsn)
                    in_txn, idx = True, 0
                    tracker.begin(commit_lsn)
                    commit_lsn_h = ("commit_lsn", lsn_text(final_lsn))
                    xid_h = ("xid", b"%d" % xid)
                    commit_ts_h = ("commit_ts", commit_time_text(commit_us))
                elif tag == COMMIT:
                    _, commit_value, end_value, _ = hot_commit(frame)
                    tracker.register(lsn_from_uint64(commit_value), lsn_from_uint64(end_value), idx)
                    stats.transactions += 1
                    in_txn = False
                else:
                    msg = parse_copy_data(frame)
                    if isinstance(msg, PrimaryKeepalive):
                        stats.server_wal_end = msg.wal_end
                        if not in_txn:
                            tracker.note_keepalive(msg.wal_end)
                        if msg.reply_requested:
                            await self._status(wire)
                        continue
                    pg = decode_pgoutput(msg.payload)
                    if isinstance(pg, Relation):
                        self.relations.add(pg)
                end = wal_end(frame)
                self.received = max(self.received, end)
            if time.monotonic() >= next_status:
                await self._status(wire)
                next_status = time.monotonic() + interval
        await self.producer.flush()
        await self._status(wire)

    async def _status(self, wire: ReplicationWire) -> None:
        flush = self.tracker.flushable()
        if flush > self.sent_flush:
            killpoint.reached("reader.after_ack_before_flush")
        write = max(lsn_from_uint64(self.received), flush)
        await wire.write(encode_standby_status(write, flush, flush))
        self.sent_flush = flush
        self.stats.confirmed_lsn = flush
        self.stats.pending_transactions = self.tracker.pending_transactions
