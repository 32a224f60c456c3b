"""Tiny builders for walsender frames and pgoutput messages, for decoder tests.

Each function returns the exact bytes PostgreSQL would send, written from the
protocol documentation independently of the decoder (so the tests are not the
decoder's own mirror image). Also reads the golden capture files.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

GOLDEN = Path(__file__).parent / "golden"

UNCHANGED = object()  # marks an unchanged TOAST column ('u') in tuple()


def cstr(text: str) -> bytes:
    return text.encode() + b"\0"


def tuple_data(*cols: object) -> bytes:
    """None -> 'n', UNCHANGED -> 'u', str/bytes -> 't', ('b', bytes) -> 'b'."""
    out = struct.pack(">h", len(cols))
    for col in cols:
        if col is None:
            out += b"n"
        elif col is UNCHANGED:
            out += b"u"
        elif isinstance(col, tuple):
            out += b"b" + struct.pack(">i", len(col[1])) + col[1]
        else:
            raw = col.encode() if isinstance(col, str) else col
            assert isinstance(raw, bytes)
            out += b"t" + struct.pack(">i", len(raw)) + raw
    return out


def begin(final_lsn: int, ts: int, xid: int) -> bytes:
    return b"B" + struct.pack(">QqI", final_lsn, ts, xid)


def commit(commit_lsn: int, end_lsn: int, ts: int, flags: int = 0) -> bytes:
    return b"C" + struct.pack(">BQQq", flags, commit_lsn, end_lsn, ts)


def origin(commit_lsn: int, name: str) -> bytes:
    return b"O" + struct.pack(">Q", commit_lsn) + cstr(name)


def relation(
    relid: int,
    namespace: str,
    name: str,
    columns: list[tuple[int, str, int, int]],
    replica_identity: str = "d",
) -> bytes:
    out = b"R" + struct.pack(">I", relid) + cstr(namespace) + cstr(name)
    out += replica_identity.encode() + struct.pack(">h", len(columns))
    for flags, col, oid, typmod in columns:
        out += struct.pack(">B", flags) + cstr(col) + struct.pack(">Ii", oid, typmod)
    return out


def type_msg(oid: int, namespace: str, name: str) -> bytes:
    return b"Y" + struct.pack(">I", oid) + cstr(namespace) + cstr(name)


def insert(relid: int, tup: bytes) -> bytes:
    return b"I" + struct.pack(">I", relid) + b"N" + tup


def update(relid: int, new: bytes, old: bytes | None = None, old_kind: bytes = b"K") -> bytes:
    out = b"U" + struct.pack(">I", relid)
    if old is not None:
        out += old_kind + old
    return out + b"N" + new


def delete(relid: int, old: bytes, old_kind: bytes = b"K") -> bytes:
    return b"D" + struct.pack(">I", relid) + old_kind + old


def truncate(relids: list[int], options: int = 0) -> bytes:
    out = b"T" + struct.pack(">iB", len(relids), options)
    return out + b"".join(struct.pack(">I", r) for r in relids)


def message(prefix: str, content: bytes, lsn: int, flags: int = 1) -> bytes:
    out = b"M" + struct.pack(">BQ", flags, lsn) + cstr(prefix)
    return out + struct.pack(">i", len(content)) + content


def xlogdata(wal_start: int, wal_end: int, ts: int, payload: bytes) -> bytes:
    return b"w" + struct.pack(">QQq", wal_start, wal_end, ts) + payload


def keepalive(wal_end: int, ts: int, reply: bool) -> bytes:
    return b"k" + struct.pack(">QqB", wal_end, ts, 1 if reply else 0)


# domain_events as the migrations define it: (flags, name, type OID, typmod)
DOMAIN_EVENTS_COLUMNS: list[tuple[int, str, int, int]] = [
    (1, "id", 2950, -1),
    (0, "stream_id", 2950, -1),
    (0, "stream_type", 25, -1),
    (0, "stream_version", 23, -1),
    (0, "event_type", 25, -1),
    (0, "event_data", 3802, -1),
    (0, "event_metadata", 3802, -1),
    (0, "idempotency_key", 25, -1),
    (0, "created_at", 1184, -1),
]

SAMPLE_ROW: dict[str, str | None] = {
    "id": "0b9a0d8e-6f7b-4c39-9d0e-1c4a2b3c4d5e",
    "stream_id": "1c9a0d8e-6f7b-4c39-9d0e-1c4a2b3c4d5f",
    "stream_type": "organization",
    "stream_version": "3",
    "event_type": "organization.bootstrap.initiated",
    "event_data": '{"name": "Acme", "admins": [{"role": "owner", "email": "a@b.c"}]}',
    "event_metadata": '{"source": "api"}',
    "idempotency_key": "key-1",
    "created_at": "2026-11-26 03:00:32.258123+00",
}


def domain_event_tuple(
    columns: list[tuple[int, str, int, int]] | None = None, **overrides: object
) -> bytes:
    """A tuple for ``columns`` (default: domain_events) from SAMPLE_ROW plus overrides."""
    row: dict[str, object] = {**SAMPLE_ROW, **overrides}
    return tuple_data(
        *(row.get(name, "extra") for _, name, _, _ in columns or DOMAIN_EVENTS_COLUMNS)
    )


def read_frames(name: str) -> list[bytes]:
    """The CopyData frames of a golden file (``uint32 length + bytes`` each)."""
    path = GOLDEN / name
    blob = path.read_bytes()
    if path.suffix == ".gz":
        blob = gzip.decompress(blob)
    frames, pos = [], 0
    while pos < len(blob):
        (n,) = struct.unpack_from(">I", blob, pos)
        frames.append(blob[pos + 4 : pos + 4 + n])
        pos += 4 + n
    return frames
