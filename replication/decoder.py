"""Pure decoder for the walsender's CopyData frames and pgoutput messages (v1, v2).

Modelled on jackc/pglogrepl: flat functions from bytes to the frozen values of
:mod:`replication.messages`, no I/O. Layouts follow PostgreSQL's "Streaming
Replication Protocol" and "Logical Replication Message Formats" chapters. Integers
are big-endian; LSNs, xids and OIDs are unsigned; timestamps are microseconds since
2000-01-01 00:00 UTC.

Every bounds check is explicit, so a truncated or malformed buffer raises
:class:`~replication.errors.DecodeError` naming the message kind, the byte offset and
what was expected there, never ``IndexError`` or ``struct.error``.
"""

from __future__ import annotations

import struct
import time
from typing import Final

from replication.errors import DecodeError
from replication.lsn import LSN, lsn_from_uint64
from replication.messages import (
    PG_EPOCH,
    Begin,
    Commit,
    Delete,
    Insert,
    LogicalMessage,
    Message,
    Origin,
    PrimaryKeepalive,
    Relation,
    RelationColumn,
    StandbyStatusUpdate,
    StreamAbort,
    StreamCommit,
    StreamStart,
    StreamStop,
    Truncate,
    TupleData,
    Type,
    Update,
    XLogData,
    pg_time_to_datetime,
)

# Re-exported so callers can take both the functions and the values from here.
__all__ = [
    "PG_EPOCH",
    "Begin",
    "Commit",
    "Delete",
    "Insert",
    "LogicalMessage",
    "Message",
    "Origin",
    "PrimaryKeepalive",
    "Relation",
    "RelationColumn",
    "StandbyStatusUpdate",
    "StreamAbort",
    "StreamCommit",
    "StreamStart",
    "StreamStop",
    "Truncate",
    "TupleData",
    "Type",
    "Update",
    "XLogData",
    "decode_pgoutput",
    "encode_standby_status",
    "parse_copy_data",
    "parse_standby_status",
    "pg_time_to_datetime",
]

# Microseconds between the Unix epoch and PostgreSQL's, for "now" in status updates.
_PG_EPOCH_UNIX_US: Final = 946_684_800 * 1_000_000

_I16: Final = struct.Struct(">h")
_new: Final = object.__new__
_set: Final = object.__setattr__
_U32: Final = struct.Struct(">I")
_I32: Final = struct.Struct(">i")
_U64: Final = struct.Struct(">Q")
_XLOG_HEADER: Final = struct.Struct(">QQq")  # wal_start, wal_end, server_time
_KEEPALIVE: Final = struct.Struct(">QqB")  # wal_end, server_time, reply_requested
_STATUS: Final = struct.Struct(">cQQQqB")  # 'r', write, flush, apply, client_time, reply
_BEGIN: Final = struct.Struct(">QqI")  # final (commit) lsn, commit time, xid
_COMMIT: Final = struct.Struct(">BQQq")  # flags, commit lsn, end lsn, commit time
_STREAM_COMMIT: Final = struct.Struct(">IBQQq")  # xid, then as Commit
_STREAM_ABORT: Final = struct.Struct(">II")  # xid, subxid
_REL_COLUMN_TAIL: Final = struct.Struct(">Ii")  # type oid, atttypmod

_TAG_NAMES = {
    0x42: "Begin",
    0x43: "Commit",
    0x4F: "Origin",
    0x52: "Relation",
    0x59: "Type",
    0x49: "Insert",
    0x55: "Update",
    0x44: "Delete",
    0x54: "Truncate",
    0x4D: "Message",
    0x53: "Stream Start",
    0x45: "Stream Stop",
    0x63: "Stream Commit",
    0x41: "Stream Abort",
}


def _short(kind: str, offset: int, what: str, need: int, have: int) -> DecodeError:
    return DecodeError(
        f"truncated: need {need} byte(s), {max(have, 0)} left",
        kind=kind,
        offset=offset,
        expected=what,
    )


def _as_bytes(buf: bytes | bytearray | memoryview) -> bytes:
    # One copy for non-bytes input: slicing bytes is the cheapest way to cut values out.
    return buf if type(buf) is bytes else bytes(buf)


def parse_copy_data(buf: bytes | bytearray | memoryview) -> XLogData | PrimaryKeepalive:
    """Decode one CopyData frame the walsender sends: XLogData ('w') or keepalive ('k')."""
    data = _as_bytes(buf)
    if not data:
        raise DecodeError("empty frame", kind="CopyData", offset=0, expected="'w' or 'k'")
    tag = data[0]
    if tag == 0x77:  # 'w'
        if len(data) < 25:
            raise _short("XLogData", 1, "XLogData header", 24, len(data) - 1)
        wal_start, wal_end, server_time = _XLOG_HEADER.unpack_from(data, 1)
        return XLogData(
            lsn_from_uint64(wal_start), lsn_from_uint64(wal_end), server_time, data[25:]
        )
    if tag == 0x6B:  # 'k'
        if len(data) < 18:
            raise _short("Keepalive", 1, "keepalive body", 17, len(data) - 1)
        if len(data) > 18:
            raise DecodeError(
                f"{len(data) - 18} trailing byte(s)", kind="Keepalive", offset=18, expected="end"
            )
        wal_end, server_time, reply = _KEEPALIVE.unpack_from(data, 1)
        return PrimaryKeepalive(LSN(wal_end), server_time, reply != 0)
    raise DecodeError(
        f"unknown frame tag {chr(tag)!r}", kind="CopyData", offset=0, expected="'w' or 'k'"
    )


def encode_standby_status(
    write: LSN, flush: LSN, apply: LSN, now_us: int | None = None, reply: bool = False
) -> bytes:
    """Build the 'r' Standby Status Update the client sends in CopyData.

    ``flush`` is what the server records as the slot's confirmed_flush_lsn: pass only
    what :class:`~replication.tracker.FlushTracker` says is durable. ``now_us`` is
    microseconds since 2000-01-01 UTC (defaults to the current time); ``reply`` asks
    the server to answer with a keepalive at once.
    """
    if now_us is None:
        now_us = time.time_ns() // 1000 - _PG_EPOCH_UNIX_US
    return _STATUS.pack(b"r", write.value, flush.value, apply.value, now_us, 1 if reply else 0)


def parse_standby_status(buf: bytes | bytearray | memoryview) -> StandbyStatusUpdate:
    """Decode an 'r' Standby Status Update (the inverse of :func:`encode_standby_status`)."""
    data = _as_bytes(buf)
    if not data or data[0] != 0x72:
        raise DecodeError("not a status update", kind="StandbyStatus", offset=0, expected="'r'")
    if len(data) != _STATUS.size:
        if len(data) < _STATUS.size:
            raise _short("StandbyStatus", 1, "status body", _STATUS.size - 1, len(data) - 1)
        raise DecodeError("trailing bytes", kind="StandbyStatus", offset=_STATUS.size)
    _, write, flush, apply, now_us, reply = _STATUS.unpack(data)
    return StandbyStatusUpdate(LSN(write), LSN(flush), LSN(apply), now_us, reply != 0)


class _Reader:
    """Bounds-checked cursor for the less frequent messages (clarity over speed)."""

    __slots__ = ("buf", "kind", "pos")

    def __init__(self, buf: bytes, kind: str, pos: int) -> None:
        self.buf = buf
        self.kind = kind
        self.pos = pos

    def _need(self, n: int, what: str) -> int:
        pos = self.pos
        if pos + n > len(self.buf):
            raise _short(self.kind, pos, what, n, len(self.buf) - pos)
        self.pos = pos + n
        return pos

    def u8(self, what: str) -> int:
        return self.buf[self._need(1, what)]

    def i16(self, what: str) -> int:
        value: int = _I16.unpack_from(self.buf, self._need(2, what))[0]
        return value

    def u32(self, what: str) -> int:
        value: int = _U32.unpack_from(self.buf, self._need(4, what))[0]
        return value

    def i32(self, what: str) -> int:
        value: int = _I32.unpack_from(self.buf, self._need(4, what))[0]
        return value

    def lsn(self, what: str) -> LSN:
        return LSN(_U64.unpack_from(self.buf, self._need(8, what))[0])

    def unpack(self, st: struct.Struct, what: str) -> tuple[int, ...]:
        values: tuple[int, ...] = st.unpack_from(self.buf, self._need(st.size, what))
        return values

    def raw(self, n: int, what: str) -> bytes:
        start = self._need(n, what)
        return self.buf[start : start + n]

    def string(self, what: str) -> str:
        start = self.pos
        end = self.buf.find(b"\0", start)
        if end < 0:
            raise DecodeError(
                "unterminated string", kind=self.kind, offset=start, expected=f"{what} + NUL"
            )
        self.pos = end + 1
        try:
            return self.buf[start:end].decode()
        except UnicodeDecodeError as exc:
            raise DecodeError(
                f"invalid UTF-8 in {what}", kind=self.kind, offset=start + exc.start
            ) from exc

    def tuple_data(self) -> TupleData:
        data, self.pos = _tuple_data(self.buf, self.pos, self.kind)
        return data

    def end(self) -> None:
        if self.pos != len(self.buf):
            raise DecodeError(
                f"{len(self.buf) - self.pos} trailing byte(s)",
                kind=self.kind,
                offset=self.pos,
                expected="end of message",
            )


def _tuple_data(buf: bytes, pos: int, kind: str) -> tuple[TupleData, int]:
    """Decode TupleData at ``pos``; the hot path of every Insert, so kept inline.

    Big-endian integers are read byte by byte and kinds compared one by one: compiled
    (mypyc), that is plain C arithmetic, where ``struct`` and set literals are calls.
    """
    end = len(buf)
    if pos + 2 > end:
        raise _short(kind, pos, "Int16 number of columns", 2, end - pos)
    ncols = (buf[pos] << 8) | buf[pos + 1]
    if ncols >= 0x8000:
        raise DecodeError(f"negative column count {ncols - 0x10000}", kind=kind, offset=pos)
    pos += 2
    kinds = bytearray(ncols)
    values: list[bytes | None] = [None] * ncols
    for i in range(ncols):
        if pos >= end:
            raise _short(kind, pos, f"kind byte of column {i}", 1, 0)
        k = buf[pos]
        kinds[i] = k
        pos += 1
        if k == 0x74 or k == 0x62:  # noqa: PLR1714 - 't' text, 'b' binary: Int32 length + bytes
            if pos + 4 > end:
                raise _short(kind, pos, f"Int32 length of column {i}", 4, end - pos)
            length = (buf[pos] << 24) | (buf[pos + 1] << 16) | (buf[pos + 2] << 8) | buf[pos + 3]
            if length >= 0x80000000:
                length -= 0x100000000
            pos += 4
            if length < 0 or pos + length > end:
                raise DecodeError(
                    f"column {i} length {length} does not fit ({end - pos} byte(s) left)",
                    kind=kind,
                    offset=pos - 4,
                    expected="0 <= length <= bytes left",
                )
            values[i] = buf[pos : pos + length]
            pos += length
        elif k != 0x6E and k != 0x75:  # noqa: PLR1714 - not null (n), not unchanged toast (u)
            raise DecodeError(
                f"unknown column kind {chr(k)!r} for column {i}",
                kind=kind,
                offset=pos - 1,
                expected="'n', 'u', 't' or 'b'",
            )
    tup: TupleData = _new(TupleData)  # TupleData(kinds, values) without the dataclass __init__
    _set(tup, "kinds", kinds.decode("ascii"))
    _set(tup, "values", tuple(values))
    return tup, pos


def _insert(buf: bytes, in_stream: bool) -> Insert:
    # Hand-inlined: Inserts are nearly all the traffic.
    pos = 1
    xid: int | None = None
    if in_stream:
        if len(buf) < 5:
            raise _short("Insert", 1, "Int32 xid", 4, len(buf) - 1)
        xid = _U32.unpack_from(buf, 1)[0]
        pos = 5
    if len(buf) < pos + 5:
        raise _short("Insert", pos, "Int32 relation id + 'N'", 5, len(buf) - pos)
    relation_id: int = _U32.unpack_from(buf, pos)[0]
    if buf[pos + 4] != 0x4E:  # 'N'
        raise DecodeError(
            f"got {chr(buf[pos + 4])!r}", kind="Insert", offset=pos + 4, expected="'N'"
        )
    new, pos = _tuple_data(buf, pos + 5, "Insert")
    if pos != len(buf):
        raise DecodeError(
            f"{len(buf) - pos} trailing byte(s)",
            kind="Insert",
            offset=pos,
            expected="end of message",
        )
    return Insert(xid, relation_id, new)


def _old_tuple(r: _Reader) -> tuple[str, TupleData]:
    tag = r.u8("'K' or 'O'")
    if tag not in {0x4B, 0x4F}:  # 'K' key columns, 'O' whole old row
        raise DecodeError(f"got {chr(tag)!r}", kind=r.kind, offset=r.pos - 1, expected="'K' or 'O'")
    return chr(tag), r.tuple_data()


def decode_pgoutput(payload: bytes | bytearray | memoryview, in_stream: bool = False) -> Message:
    """Decode one pgoutput message (protocol v1 or v2) from an XLogData payload.

    ``in_stream`` must be True between Stream Start and Stream Stop: there, Relation,
    Type, Insert, Update, Delete, Truncate and Message carry the xid after the tag.
    """
    buf = _as_bytes(payload)
    if not buf:
        raise DecodeError("empty payload", kind="pgoutput", offset=0, expected="message tag")
    tag = buf[0]
    if tag == 0x49:  # 'I'
        return _insert(buf, in_stream)
    kind = _TAG_NAMES.get(tag)
    if kind is None:
        raise DecodeError(
            f"unknown message tag {chr(tag)!r}",
            kind="pgoutput",
            offset=0,
            expected="a protocol v1/v2 message tag",
        )
    r = _Reader(buf, kind, 1)
    msg: Message
    if tag == 0x42:  # 'B'
        lsn, ts, xid = r.unpack(_BEGIN, "final LSN, commit time, xid")
        msg = Begin(LSN(lsn), ts, xid)
    elif tag == 0x43:  # 'C'
        flags, lsn, end_lsn, ts = r.unpack(_COMMIT, "flags, commit LSN, end LSN, commit time")
        msg = Commit(flags, LSN(lsn), LSN(end_lsn), ts)
    elif tag == 0x4F:  # 'O'
        msg = Origin(r.lsn("commit LSN"), r.string("origin name"))
    elif tag == 0x53:  # 'S'
        msg = StreamStart(r.u32("xid"), r.u8("first-segment flag") == 1)
    elif tag == 0x45:  # 'E'
        msg = StreamStop()
    elif tag == 0x63:  # 'c'
        xid, flags, lsn, end_lsn, ts = r.unpack(_STREAM_COMMIT, "xid, flags, LSNs, commit time")
        msg = StreamCommit(xid, flags, LSN(lsn), LSN(end_lsn), ts)
    elif tag == 0x41:  # 'A'
        xid, subxid = r.unpack(_STREAM_ABORT, "xid, subtransaction xid")
        msg = StreamAbort(xid, subxid)
    else:
        msg = _xid_message(r, tag, r.u32("Int32 xid") if in_stream else None)
    r.end()
    return msg


def _xid_message(r: _Reader, tag: int, xid: int | None) -> Message:
    """Messages that carry an xid inside streamed transactions."""
    if tag == 0x52:  # 'R'
        relation_id = r.u32("relation id")
        namespace = r.string("namespace")
        name = r.string("relation name")
        replica_identity = chr(r.u8("replica identity setting"))
        ncols = r.i16("number of columns")
        if ncols < 0:
            raise DecodeError(f"negative column count {ncols}", kind=r.kind, offset=r.pos - 2)
        columns = []
        for i in range(ncols):
            flags = r.u8(f"flags of column {i}")
            col_name = r.string(f"name of column {i}")
            type_oid, typmod = r.unpack(_REL_COLUMN_TAIL, f"type OID and modifier of column {i}")
            columns.append(RelationColumn(flags, col_name, type_oid, typmod))
        return Relation(xid, relation_id, namespace, name, replica_identity, tuple(columns))
    if tag == 0x59:  # 'Y'
        return Type(xid, r.u32("type OID"), r.string("namespace"), r.string("type name"))
    if tag == 0x55:  # 'U'
        relation_id = r.u32("relation id")
        old_kind: str | None = None
        old: TupleData | None = None
        tag2 = r.u8("'K', 'O' or 'N'")
        if tag2 in (0x4B, 0x4F):  # 'K' key columns, 'O' whole old row
            old_kind, old = chr(tag2), r.tuple_data()
            tag2 = r.u8("'N'")
        if tag2 != 0x4E:
            raise DecodeError(f"got {chr(tag2)!r}", kind=r.kind, offset=r.pos - 1, expected="'N'")
        return Update(xid, relation_id, old_kind, old, r.tuple_data())
    if tag == 0x44:  # 'D'
        relation_id = r.u32("relation id")
        del_kind, del_old = _old_tuple(r)
        return Delete(xid, relation_id, del_kind, del_old)
    if tag == 0x54:  # 'T'
        nrels = r.i32("number of relations")
        if nrels < 0:
            raise DecodeError(f"negative relation count {nrels}", kind=r.kind, offset=r.pos - 4)
        options = r.u8("option bits")
        ids = tuple(r.u32(f"relation id {i}") for i in range(nrels))
        return Truncate(xid, options, ids)
    # 'M': the only tag left that _TAG_NAMES knows.
    flags = r.u8("flags")
    lsn = r.lsn("message LSN")
    prefix = r.string("prefix")
    length = r.i32("content length")
    if length < 0:
        raise DecodeError(f"negative content length {length}", kind=r.kind, offset=r.pos - 4)
    return LogicalMessage(xid, flags, lsn, prefix, r.raw(length, "message content"))
