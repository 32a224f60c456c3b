"""The three messages of nearly every transaction, read straight from their XLogData frame.

A single-row transaction arrives as three CopyData frames: Begin, Insert, Commit.
:func:`~replication.decoder.parse_copy_data` and :func:`~replication.decoder.decode_pgoutput`
build two frozen values per frame, plus LSN objects, and at tens of thousands of frames
per second that is a large share of the reader's time. The functions here read the same
bytes into plain tuples of ints for the reader's loop, with the same bounds checks: a
frame that does not have the exact layout is handed to the decoder, which raises its
precise :class:`~replication.errors.DecodeError` (kind, offset, what was expected).
Every other frame (keepalives, Relation, Origin, Type, ...) goes through the decoder.

Also the text forms the Kafka headers carry, built from the ints without the objects,
and :class:`FrameLoop`, the reader's loop over those three messages without awaiting
(this module is compiled with mypyc when built, see :mod:`replication.native`).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import timedelta
from typing import Final, NoReturn

from replication.decoder import _tuple_data, decode_pgoutput
from replication.errors import DecodeError
from replication.lsn import LSN, Position
from replication.messages import PG_EPOCH, TupleData
from replication.record_value import EVENT_TYPE_HEADER
from replication.tracker import FlushTracker

PAYLOAD: Final = 25  # where the pgoutput message starts in an XLogData ('w') frame
BEGIN: Final = 0x42  # 'B'
COMMIT: Final = 0x43  # 'C'
INSERT: Final = 0x49  # 'I'

_XLOG: Final = 0x77  # 'w'
_BEGIN: Final = struct.Struct(">QqI")  # final (commit) lsn, commit time, xid
_COMMIT: Final = struct.Struct(">BQQq")  # flags, commit lsn, end lsn, commit time
_BEGIN_FRAME: Final = PAYLOAD + 1 + _BEGIN.size
_COMMIT_FRAME: Final = PAYLOAD + 1 + _COMMIT.size


def payload_tag(frame: bytes) -> int:
    """The pgoutput tag of an XLogData frame; 0 for any other frame."""
    if len(frame) > PAYLOAD and frame[0] == _XLOG:
        return frame[PAYLOAD]
    return 0


def _u32(buf: bytes, pos: int) -> int:
    """The big-endian unsigned 32-bit integer at ``pos`` (bounds checked by the caller).

    Byte by byte: compiled, these helpers are C arithmetic where ``struct`` is a call.
    """
    return (buf[pos] << 24) | (buf[pos + 1] << 16) | (buf[pos + 2] << 8) | buf[pos + 3]


def _u64(buf: bytes, pos: int) -> int:
    """The big-endian unsigned 64-bit integer at ``pos``."""
    return (_u32(buf, pos) << 32) | _u32(buf, pos + 4)


def _i64(buf: bytes, pos: int) -> int:
    """The big-endian signed 64-bit integer at ``pos``."""
    value = _u64(buf, pos)
    return value - (1 << 64) if value >= (1 << 63) else value


def wal_end(frame: bytes) -> int:
    """The server's WAL end an XLogData frame reports (``payload_tag(frame) != 0``)."""
    return _u64(frame, 9)


def _reject(frame: bytes) -> NoReturn:
    decode_pgoutput(frame[PAYLOAD:])  # raises the decoder's precise error
    raise DecodeError("unexpected layout", kind="pgoutput", offset=0)  # pragma: no cover


def begin(frame: bytes) -> tuple[int, int, int]:
    """``(final_lsn, commit_time_us, xid)`` of a Begin frame."""
    if len(frame) != _BEGIN_FRAME:
        _reject(frame)
    return _u64(frame, PAYLOAD + 1), _i64(frame, PAYLOAD + 9), _u32(frame, PAYLOAD + 17)


def commit(frame: bytes) -> tuple[int, int, int, int]:
    """``(flags, commit_lsn, end_lsn, commit_time_us)`` of a Commit frame."""
    if len(frame) != _COMMIT_FRAME:
        _reject(frame)
    return (
        frame[PAYLOAD + 1],
        _u64(frame, PAYLOAD + 2),
        _u64(frame, PAYLOAD + 10),
        _i64(frame, PAYLOAD + 18),
    )


def insert(frame: bytes) -> tuple[int, TupleData]:
    """``(relation_id, new tuple)`` of an Insert frame (protocol v1: no xid)."""
    if len(frame) >= PAYLOAD + 6 and frame[PAYLOAD + 5] == 0x4E:  # 'N'
        try:
            tup, end = _tuple_data(frame, PAYLOAD + 6, "Insert")
        except DecodeError:
            end = -1
        if end == len(frame):
            return _u32(frame, PAYLOAD + 1), tup
    _reject(frame)


def lsn_text(value: int) -> bytes:
    """``str(LSN(value))`` as bytes: ``X/X`` in uppercase hex."""
    return b"%X/%X" % (value >> 32, value & 0xFFFFFFFF)


class CommitTimeText:
    """``pg_time_to_datetime(us).isoformat()`` as bytes, for the ``commit_ts`` header.

    Remembers the date-and-seconds part of the last call: a backlog commits many
    transactions per second, so most calls only format the microseconds.
    """

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second: int | None = None
        self._prefix = b""

    def __call__(self, us: int) -> bytes:
        second, micro = divmod(us, 1_000_000)
        if second != self._second:
            try:
                moment = PG_EPOCH + timedelta(seconds=second)
            except OverflowError as exc:
                raise ValueError(f"PostgreSQL timestamp {us} is outside datetime's range") from exc
            self._prefix = moment.isoformat()[:19].encode()
            self._second = second
        if micro:
            return b"%s.%06d+00:00" % (self._prefix, micro)
        return self._prefix + b"+00:00"


Headers = list[tuple[str, bytes]]
# (relation id, tuple) -> (key, value, event type): ValueEncoder.encode.
Encode = Callable[[int, TupleData], tuple[bytes, bytes, bytes]]
Add = Callable[[Position, bytes, bytes, Headers], None]

_NO_HEADER: Final = ("", b"")
# The ``idx`` header of the first events of a transaction, built once (most transactions
# hold a few events).
_IDX_HEADERS: Final = tuple(("idx", b"%d" % i) for i in range(256))
# An Insert frame larger than this goes to the session's slow path, which checks the
# event's size and sends an oversized one as a claim check (replication.value_encoder): a frame
# up to this size cannot encode to more than the topic takes (JSON escaping at most
# sextuples a text column's bytes).
CAREFUL_FRAME_BYTES: Final = 1 << 20
_new: Final = object.__new__
_set: Final = object.__setattr__


class FrameLoop:
    """The reader's handling of Begin, Insert and Commit frames, in order, without awaiting.

    :meth:`run` goes through a batch of frames until one needs the session's attention
    and returns its index: any other frame (keepalive, Relation, ...), an Insert whose
    row cannot be converted (kept for :meth:`take_rejected`: the session dead-letters
    it without reading the frame again, then sets ``idx += 1``), an
    Insert frame above :data:`CAREFUL_FRAME_BYTES` (the session sends it, as a claim
    check if too large, then sets ``idx += 1``), an Insert outside a transaction, or an
    Insert while ``max_in_flight`` events are unacknowledged (the session waits, then calls :meth:`run` again from there).
    Each Insert is handed to ``add`` with its position and headers (:meth:`headers`);
    Begin and Commit go
    to the tracker. ``in_flight`` is lowered by the session as Kafka acknowledges.
    """

    def __init__(self, encode: Encode, add: Add, tracker: FlushTracker, max_in_flight: int) -> None:
        self.encode = encode
        self.add = add
        self.tracker = tracker
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.in_txn = False
        self.commit_lsn = LSN.ZERO
        self.xid = 0
        self.idx = 0
        self.received = 0  # the highest wal_end of the frames handled
        self.events = 0  # events handed to ``add``
        self.transactions = 0
        self._commit_time_text = CommitTimeText()
        # The headers every event of the transaction shares, built once at its Begin.
        self._commit_lsn_h = _NO_HEADER
        self._xid_h = _NO_HEADER
        self._commit_ts_h = _NO_HEADER
        # The row of the Insert run() stopped at because it could not be converted.
        self._rejected: tuple[int, TupleData, DecodeError] | None = None

    def take_rejected(self) -> tuple[int, TupleData, DecodeError] | None:
        """``(relation id, tuple, error)`` of the Insert :meth:`run` stopped at because its
        row could not be converted, once; None when it stopped for another reason."""
        rejected, self._rejected = self._rejected, None
        return rejected

    def headers(self, idx: int, event_type: bytes) -> Headers:
        """The headers of the current transaction's event ``idx`` of type ``event_type``
        (its UTF-8 bytes): commit_lsn, idx, xid, commit_ts, event_type (docs/events.md)."""
        return [
            self._commit_lsn_h,
            _IDX_HEADERS[idx] if idx < 256 else ("idx", b"%d" % idx),
            self._xid_h,
            self._commit_ts_h,
            (EVENT_TYPE_HEADER, event_type),
        ]

    def run(self, frames: list[bytes], start: int) -> int:
        """Handle ``frames[start:]`` up to the first the session must handle; its index
        (``len(frames)`` when all were handled)."""
        encode = self.encode
        add = self.add
        i = start
        n = len(frames)
        while i < n:
            frame = frames[i]
            tag = payload_tag(frame)
            if tag == INSERT:
                if (
                    not self.in_txn
                    or self.in_flight >= self.max_in_flight
                    or len(frame) > CAREFUL_FRAME_BYTES
                ):
                    return i
                relation_id, tup = insert(frame)
                try:
                    key, value, event_type = encode(relation_id, tup)
                except DecodeError as exc:
                    self._rejected = (relation_id, tup, exc)
                    return i
                idx = self.idx
                self.in_flight += 1
                pos: Position = _new(Position)  # Position(commit_lsn, idx) without its checks
                _set(pos, "commit_lsn", self.commit_lsn)
                _set(pos, "idx", idx)
                add(
                    pos,
                    key,
                    value,
                    [
                        self._commit_lsn_h,
                        _IDX_HEADERS[idx] if idx < 256 else ("idx", b"%d" % idx),
                        self._xid_h,
                        self._commit_ts_h,
                        (EVENT_TYPE_HEADER, event_type),
                    ],
                )
                self.events += 1
                self.idx = idx + 1
            elif tag == BEGIN:
                final_lsn, commit_us, xid = begin(frame)
                self.tracker.begin_at(final_lsn)
                lsn: LSN = _new(LSN)  # lsn_from_uint64, inlined
                _set(lsn, "value", final_lsn)
                self.commit_lsn = lsn
                self.in_txn = True
                self.idx = 0
                self.xid = xid
                self._commit_lsn_h = ("commit_lsn", lsn_text(final_lsn))
                self._xid_h = ("xid", b"%d" % xid)
                self._commit_ts_h = ("commit_ts", self._commit_time_text(commit_us))
            elif tag == COMMIT:
                _, commit_lsn, end_lsn, _ = commit(frame)
                self.tracker.register_at(commit_lsn, end_lsn, self.idx)
                self.transactions += 1
                self.in_txn = False
            else:
                return i
            self.received = max(self.received, wal_end(frame))
            i += 1
        return n
