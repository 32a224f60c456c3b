"""The three messages of nearly every transaction, read straight from their XLogData frame.

A single-row transaction arrives as three CopyData frames: Begin, Insert, Commit.
:func:`~replication.decoder.parse_copy_data` and :func:`~replication.decoder.decode_pgoutput`
build two frozen values per frame, plus LSN objects, and at tens of thousands of frames
per second that is a large share of the reader's time. The functions here read the same
bytes into plain tuples of ints for the reader's loop, with the same bounds checks: a
frame that does not have the exact layout is handed to the decoder, which raises its
precise :class:`~replication.errors.DecodeError` (kind, offset, what was expected).
Every other frame (keepalives, Relation, Origin, Type, ...) goes through the decoder.

Also the text forms the Kafka headers carry, built from the ints without the objects.
"""

from __future__ import annotations

import struct
from datetime import timedelta
from typing import NoReturn

from replication.decoder import _tuple_data, decode_pgoutput
from replication.errors import DecodeError
from replication.messages import PG_EPOCH, TupleData

PAYLOAD = 25  # where the pgoutput message starts in an XLogData ('w') frame
BEGIN = 0x42  # 'B'
COMMIT = 0x43  # 'C'
INSERT = 0x49  # 'I'

_XLOG = 0x77  # 'w'
_WAL_END = struct.Struct(">Q")  # after 'w' and wal_start
_BEGIN = struct.Struct(">QqI")  # final (commit) lsn, commit time, xid
_COMMIT = struct.Struct(">BQQq")  # flags, commit lsn, end lsn, commit time
_U32 = struct.Struct(">I")
_BEGIN_FRAME = PAYLOAD + 1 + _BEGIN.size
_COMMIT_FRAME = PAYLOAD + 1 + _COMMIT.size


def payload_tag(frame: bytes) -> int:
    """The pgoutput tag of an XLogData frame; 0 for any other frame."""
    if len(frame) > PAYLOAD and frame[0] == _XLOG:
        return frame[PAYLOAD]
    return 0


def wal_end(frame: bytes) -> int:
    """The server's WAL end an XLogData frame reports (``payload_tag(frame) != 0``)."""
    value: int = _WAL_END.unpack_from(frame, 9)[0]
    return value


def _reject(frame: bytes) -> NoReturn:
    decode_pgoutput(frame[PAYLOAD:])  # raises the decoder's precise error
    raise DecodeError("unexpected layout", kind="pgoutput", offset=0)  # pragma: no cover


def begin(frame: bytes) -> tuple[int, int, int]:
    """``(final_lsn, commit_time_us, xid)`` of a Begin frame."""
    if len(frame) != _BEGIN_FRAME:
        _reject(frame)
    fields: tuple[int, int, int] = _BEGIN.unpack_from(frame, PAYLOAD + 1)
    return fields


def commit(frame: bytes) -> tuple[int, int, int, int]:
    """``(flags, commit_lsn, end_lsn, commit_time_us)`` of a Commit frame."""
    if len(frame) != _COMMIT_FRAME:
        _reject(frame)
    fields: tuple[int, int, int, int] = _COMMIT.unpack_from(frame, PAYLOAD + 1)
    return fields


def insert(frame: bytes) -> tuple[int, TupleData]:
    """``(relation_id, new tuple)`` of an Insert frame (protocol v1: no xid)."""
    if len(frame) >= PAYLOAD + 6 and frame[PAYLOAD + 5] == 0x4E:  # 'N'
        try:
            tup, end = _tuple_data(frame, PAYLOAD + 6, "Insert")
        except DecodeError:
            end = -1
        if end == len(frame):
            relation_id: int = _U32.unpack_from(frame, PAYLOAD + 1)[0]
            return relation_id, tup
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
