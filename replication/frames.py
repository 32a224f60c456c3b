"""The walsender's CopyData frames: XLogData and keepalives in, standby status updates out.

Pure, like :mod:`replication.decoder` (which decodes the pgoutput message inside an
XLogData frame and re-exports these functions). Layouts follow PostgreSQL's "Streaming
Replication Protocol" chapter: big-endian integers, LSNs unsigned, times in microseconds
since 2000-01-01 00:00 UTC. A malformed frame raises
:class:`~replication.errors.DecodeError` naming the frame kind, offset and expectation.
"""

from __future__ import annotations

import struct
import time
from typing import Final

from replication.errors import DecodeError
from replication.lsn import LSN, lsn_from_uint64
from replication.messages import PrimaryKeepalive, StandbyStatusUpdate, XLogData

# Microseconds between the Unix epoch and PostgreSQL's, for "now" in status updates.
_PG_EPOCH_UNIX_US: Final = 946_684_800 * 1_000_000

_XLOG_HEADER: Final = struct.Struct(">QQq")  # wal_start, wal_end, server_time
_KEEPALIVE: Final = struct.Struct(">QqB")  # wal_end, server_time, reply_requested
_STATUS: Final = struct.Struct(">cQQQqB")  # 'r', write, flush, apply, client_time, reply


def truncated(kind: str, offset: int, what: str, need: int, have: int) -> DecodeError:
    """The error for a buffer that ends before ``need`` more bytes of ``what``."""
    return DecodeError(
        f"truncated: need {need} byte(s), {max(have, 0)} left",
        kind=kind,
        offset=offset,
        expected=what,
    )


def as_bytes(buf: bytes | bytearray | memoryview) -> bytes:
    """``buf`` as bytes: one copy for non-bytes input (slicing bytes is the cheapest way
    to cut values out)."""
    return buf if type(buf) is bytes else bytes(buf)


def parse_copy_data(buf: bytes | bytearray | memoryview) -> XLogData | PrimaryKeepalive:
    """Decode one CopyData frame the walsender sends: XLogData ('w') or keepalive ('k')."""
    data = as_bytes(buf)
    if not data:
        raise DecodeError("empty frame", kind="CopyData", offset=0, expected="'w' or 'k'")
    tag = data[0]
    if tag == 0x77:  # 'w'
        if len(data) < 25:
            raise truncated("XLogData", 1, "XLogData header", 24, len(data) - 1)
        wal_start, wal_end, server_time = _XLOG_HEADER.unpack_from(data, 1)
        return XLogData(
            lsn_from_uint64(wal_start), lsn_from_uint64(wal_end), server_time, data[25:]
        )
    if tag == 0x6B:  # 'k'
        if len(data) < 18:
            raise truncated("Keepalive", 1, "keepalive body", 17, len(data) - 1)
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
    data = as_bytes(buf)
    if not data or data[0] != 0x72:
        raise DecodeError("not a status update", kind="StandbyStatus", offset=0, expected="'r'")
    if len(data) != _STATUS.size:
        if len(data) < _STATUS.size:
            raise truncated("StandbyStatus", 1, "status body", _STATUS.size - 1, len(data) - 1)
        raise DecodeError("trailing bytes", kind="StandbyStatus", offset=_STATUS.size)
    _, write, flush, apply, now_us, reply = _STATUS.unpack(data)
    return StandbyStatusUpdate(LSN(write), LSN(flush), LSN(apply), now_us, reply != 0)
