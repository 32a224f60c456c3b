"""Pure decoder for pgoutput messages (protocol version 1); the walsender's CopyData frames around
them are :mod:`replication.frames` (re-exported here).

Modelled on jackc/pglogrepl: flat functions from bytes to the frozen values of
:mod:`replication.messages`, no I/O. Layouts follow PostgreSQL's "Streaming
Replication Protocol" and "Logical Replication Message Formats" chapters. Integers
are big-endian; LSNs, xids and OIDs are unsigned; timestamps are microseconds since
2000-01-01 00:00 UTC.

Protocol version 1 is what the reader asks for (``replication.session``): PostgreSQL then
decodes a large transaction only once it has committed (spilling to disk past
``logical_decoding_work_mem``) and never sends the streaming messages of version 2
(Stream Start/Stop/Commit/Abort, and an xid in each change); their tags are refused here.

Every bounds check is explicit, so a truncated or malformed buffer raises
:class:`~replication.errors.DecodeError` naming the message kind, the byte offset and
what was expected there, never ``IndexError`` or ``struct.error``.
"""

from __future__ import annotations

import struct
from typing import Final

from replication.errors import DecodeError
from replication.frames import as_bytes as _as_bytes
from replication.frames import encode_standby_status, parse_copy_data, parse_standby_status
from replication.frames import truncated as _short
from replication.lsn import LSN
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

_I16: Final = struct.Struct(">h")
_new: Final = object.__new__
_set: Final = object.__setattr__
_U32: Final = struct.Struct(">I")
_I32: Final = struct.Struct(">i")
_U64: Final = struct.Struct(">Q")
_BEGIN: Final = struct.Struct(">QqI")  # final (commit) lsn, commit time, xid
_COMMIT: Final = struct.Struct(">BQQq")  # flags, commit lsn, end lsn, commit time
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
}


class _MessageCursor:
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


def _insert(buf: bytes) -> Insert:
    # Hand-inlined: Inserts are nearly all the traffic.
    pos = 1
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
    return Insert(relation_id, new)


def _old_tuple(r: _MessageCursor) -> tuple[str, TupleData]:
    tag = r.u8("'K' or 'O'")
    if tag not in {0x4B, 0x4F}:  # 'K' key columns, 'O' whole old row
        raise DecodeError(f"got {chr(tag)!r}", kind=r.kind, offset=r.pos - 1, expected="'K' or 'O'")
    return chr(tag), r.tuple_data()


def decode_pgoutput(payload: bytes | bytearray | memoryview) -> Message:
    """Decode one pgoutput message (protocol version 1) from an XLogData payload."""
    buf = _as_bytes(payload)
    if not buf:
        raise DecodeError("empty payload", kind="pgoutput", offset=0, expected="message tag")
    tag = buf[0]
    if tag == 0x49:  # 'I'
        return _insert(buf)
    kind = _TAG_NAMES.get(tag)
    if kind is None:
        raise DecodeError(
            f"unknown message tag {chr(tag)!r}",
            kind="pgoutput",
            offset=0,
            expected="a protocol version 1 message tag",
        )
    r = _MessageCursor(buf, kind, 1)
    msg: Message
    if tag == 0x42:  # 'B'
        lsn, ts, xid = r.unpack(_BEGIN, "final LSN, commit time, xid")
        msg = Begin(LSN(lsn), ts, xid)
    elif tag == 0x43:  # 'C'
        flags, lsn, end_lsn, ts = r.unpack(_COMMIT, "flags, commit LSN, end LSN, commit time")
        msg = Commit(flags, LSN(lsn), LSN(end_lsn), ts)
    elif tag == 0x4F:  # 'O'
        msg = Origin(r.lsn("commit LSN"), r.string("origin name"))
    else:
        msg = _change_message(r, tag)
    r.end()
    return msg


def _change_message(r: _MessageCursor, tag: int) -> Message:
    """Relation, Type, the changes and Message."""
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
        return Relation(relation_id, namespace, name, replica_identity, tuple(columns))
    if tag == 0x59:  # 'Y'
        return Type(r.u32("type OID"), r.string("namespace"), r.string("type name"))
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
        return Update(relation_id, old_kind, old, r.tuple_data())
    if tag == 0x44:  # 'D'
        relation_id = r.u32("relation id")
        del_kind, del_old = _old_tuple(r)
        return Delete(relation_id, del_kind, del_old)
    if tag == 0x54:  # 'T'
        nrels = r.i32("number of relations")
        if nrels < 0:
            raise DecodeError(f"negative relation count {nrels}", kind=r.kind, offset=r.pos - 4)
        options = r.u8("option bits")
        ids = tuple(r.u32(f"relation id {i}") for i in range(nrels))
        return Truncate(options, ids)
    # 'M': the only tag left that _TAG_NAMES knows.
    flags = r.u8("flags")
    lsn = r.lsn("message LSN")
    prefix = r.string("prefix")
    length = r.i32("content length")
    if length < 0:
        raise DecodeError(f"negative content length {length}", kind=r.kind, offset=r.pos - 4)
    return LogicalMessage(flags, lsn, prefix, r.raw(length, "message content"))
