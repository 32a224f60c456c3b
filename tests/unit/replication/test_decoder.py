"""pgoutput / walsender decoder: every message from hand-built buffers, and bad input."""

from __future__ import annotations

import contextlib
import re
import time
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replication.decoder import (
    PG_EPOCH,
    Begin,
    Commit,
    Delete,
    Insert,
    LogicalMessage,
    Origin,
    PrimaryKeepalive,
    Relation,
    RelationColumn,
    Truncate,
    TupleData,
    Type,
    Update,
    XLogData,
    decode_pgoutput,
    encode_standby_status,
    parse_copy_data,
    parse_standby_status,
    pg_time_to_datetime,
)
from replication.errors import DecodeError
from replication.lsn import LSN
from tests.unit import pgoutput_builder as b

U64 = st.integers(min_value=0, max_value=2**64 - 1)
I64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
TS = 817_441_232_258_123  # 2025-11-26 03:00:32.258123 UTC in PG microseconds


def offset_of(exc: pytest.ExceptionInfo[DecodeError]) -> int | None:
    match = re.search(r"at byte (\d+)", str(exc.value))
    assert (match is None) == (exc.value.offset is None)
    return exc.value.offset


# --- frames -------------------------------------------------------------------------


def test_xlogdata_frame() -> None:
    payload = b.begin(0x1_0000_0100, TS, 7)
    frame = parse_copy_data(b.xlogdata(0x100, 0x200, TS, payload))
    assert frame == XLogData(LSN(0x100), LSN(0x200), TS, payload)


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_frames_accept_any_buffer(wrap: type) -> None:
    frame = parse_copy_data(wrap(b.xlogdata(1, 2, 3, b"E")))
    assert isinstance(frame, XLogData)
    assert type(frame.payload) is bytes
    assert decode_pgoutput(wrap(b.origin(0x100, "o"))) == Origin(LSN(0x100), "o")


@pytest.mark.parametrize("reply", [True, False])
def test_keepalive_frame(reply: bool) -> None:
    frame = parse_copy_data(b.keepalive(0x16_B374D848, TS, reply))
    assert frame == PrimaryKeepalive(LSN.parse("16/B374D848"), TS, reply)


def test_truncated_frames_report_offset() -> None:
    with pytest.raises(DecodeError, match="XLogData at byte 1") as exc:
        parse_copy_data(b.xlogdata(1, 2, 3, b"")[:20])
    assert offset_of(exc) == 1
    with pytest.raises(DecodeError, match="Keepalive at byte 1"):
        parse_copy_data(b.keepalive(1, 2, True)[:-1])
    with pytest.raises(DecodeError, match="Keepalive at byte 18: 1 trailing"):
        parse_copy_data(b.keepalive(1, 2, True) + b"x")
    with pytest.raises(DecodeError, match="CopyData at byte 0: empty"):
        parse_copy_data(b"")
    with pytest.raises(DecodeError, match="unknown frame tag 'r'"):
        parse_copy_data(encode_standby_status(LSN.ZERO, LSN.ZERO, LSN.ZERO, 0))


def test_standby_status_layout() -> None:
    raw = encode_standby_status(LSN(1), LSN(2), LSN(3), now_us=4, reply=True)
    assert (
        raw == b"r" + (1).to_bytes(8) + (2).to_bytes(8) + (3).to_bytes(8) + (4).to_bytes(8) + b"\1"
    )


@given(U64, U64, U64, I64, st.booleans())
def test_standby_status_round_trip(w: int, f: int, a: int, now: int, reply: bool) -> None:
    raw = encode_standby_status(LSN(w), LSN(f), LSN(a), now_us=now, reply=reply)
    status = parse_standby_status(raw)
    assert (status.write, status.flush, status.apply) == (LSN(w), LSN(f), LSN(a))
    assert (status.client_time_us, status.reply_requested) == (now, reply)


def test_standby_status_default_time_is_now_since_2000() -> None:
    status = parse_standby_status(encode_standby_status(LSN.ZERO, LSN.ZERO, LSN.ZERO))
    sent = pg_time_to_datetime(status.client_time_us)
    assert abs(sent.timestamp() - time.time()) < 5
    assert status.reply_requested is False


def test_standby_status_parse_errors() -> None:
    good = encode_standby_status(LSN.ZERO, LSN.ZERO, LSN.ZERO, 0)
    with pytest.raises(DecodeError, match="StandbyStatus at byte 1"):
        parse_standby_status(good[:-1])
    with pytest.raises(DecodeError, match="StandbyStatus at byte 34"):
        parse_standby_status(good + b"\0")
    with pytest.raises(DecodeError, match="StandbyStatus at byte 0"):
        parse_standby_status(b"k" + good[1:])


def test_pg_time() -> None:
    assert pg_time_to_datetime(0) == PG_EPOCH == datetime(2000, 1, 1, tzinfo=UTC)
    assert pg_time_to_datetime(TS) == datetime(2025, 11, 26, 3, 0, 32, 258123, tzinfo=UTC)
    with pytest.raises(ValueError, match="outside"):
        pg_time_to_datetime(2**63 - 1)


# --- pgoutput messages ----------------------------------------------------------------


def test_begin_commit_origin() -> None:
    msg = decode_pgoutput(b.begin(0x16_B374D848, TS, 4242))
    assert msg == Begin(LSN.parse("16/B374D848"), TS, 4242)
    assert isinstance(msg, Begin)
    assert msg.commit_time == datetime(2025, 11, 26, 3, 0, 32, 258123, tzinfo=UTC)
    msg2 = decode_pgoutput(b.commit(0x100, 0x130, TS))
    assert msg2 == Commit(0, LSN(0x100), LSN(0x130), TS)
    assert isinstance(msg2, Commit)
    assert msg2.commit_time.year == 2025
    assert decode_pgoutput(b.origin(0x100, "node_a")) == Origin(LSN(0x100), "node_a")


COLS = [(1, "id", 2950, -1), (0, "name", 1043, 36)]


def test_relation_and_type() -> None:
    raw = b.relation(16384, "public", "domain_events", COLS, "f")
    msg = decode_pgoutput(raw)
    assert msg == Relation(
        16384,
        "public",
        "domain_events",
        "f",
        (RelationColumn(1, "id", 2950, -1), RelationColumn(0, "name", 1043, 36)),
    )
    assert isinstance(msg, Relation)
    assert [c.is_key for c in msg.columns] == [True, False]
    assert decode_pgoutput(b.type_msg(70000, "", "mood")) == Type(70000, "", "mood")


def test_insert_all_column_kinds() -> None:
    tup = b.tuple_data("héllo", None, b.UNCHANGED, ("b", b"\x00\x01"), "")
    msg = decode_pgoutput(b.insert(5, tup))
    assert msg == Insert(5, TupleData("tnubt", ("héllo".encode(), None, None, b"\0\1", b"")))
    assert isinstance(msg, Insert)
    assert msg.new.text(0) == "héllo"
    assert msg.new.text(1) is None


def test_update_variants() -> None:
    new = b.tuple_data("1", "b")
    assert decode_pgoutput(b.update(5, new)) == Update(5, None, None, TupleData("tt", (b"1", b"b")))
    key = b.tuple_data("1", None)
    assert decode_pgoutput(b.update(5, new, key, b"K")) == Update(
        5, "K", TupleData("tn", (b"1", None)), TupleData("tt", (b"1", b"b"))
    )
    old = b.tuple_data("1", "a")
    msg = decode_pgoutput(b.update(5, b.tuple_data("1", b.UNCHANGED), old, b"O"))
    assert msg == Update(5, "O", TupleData("tt", (b"1", b"a")), TupleData("tu", (b"1", None)))


@pytest.mark.parametrize("kind", ["K", "O"])
def test_delete(kind: str) -> None:
    raw = b.delete(9, b.tuple_data("1"), kind.encode())
    assert decode_pgoutput(raw) == Delete(9, kind, TupleData("t", (b"1",)))


def test_truncate() -> None:
    msg = decode_pgoutput(b.truncate([1, 2, 3], options=3))
    assert msg == Truncate(3, (1, 2, 3))
    assert isinstance(msg, Truncate)
    assert msg.cascade and msg.restart_identity
    empty = decode_pgoutput(b.truncate([], options=0))
    assert isinstance(empty, Truncate)
    assert not empty.cascade and not empty.restart_identity


def test_logical_message() -> None:
    msg = decode_pgoutput(b.message("pfx", b"\x00body", 0x500, 1))
    assert msg == LogicalMessage(1, LSN(0x500), "pfx", b"\x00body")
    assert isinstance(msg, LogicalMessage)
    assert msg.transactional
    empty = decode_pgoutput(b.message("", b"", 0, 0))
    assert isinstance(empty, LogicalMessage)
    assert not empty.transactional


@pytest.mark.parametrize("tag", [b"S", b"E", b"c", b"A"])
def test_protocol_2_streaming_messages_are_refused(tag: bytes) -> None:
    # The reader asks for proto_version 1: Stream Start/Stop/Commit/Abort never come.
    with pytest.raises(DecodeError, match="unknown message tag"):
        decode_pgoutput(tag + bytes(30))


# --- malformed input ------------------------------------------------------------------

ALL_MESSAGES = [
    b.begin(1, 2, 3),
    b.commit(1, 2, 3),
    b.origin(1, "o"),
    b.relation(1, "public", "t", COLS),
    b.type_msg(1, "public", "t"),
    b.insert(1, b.tuple_data("a", None, b.UNCHANGED, ("b", b"z"))),
    b.update(1, b.tuple_data("a"), b.tuple_data("b"), b"O"),
    b.update(1, b.tuple_data("a")),
    b.delete(1, b.tuple_data("a")),
    b.truncate([1, 2]),
    b.message("p", b"c", 1),
]


@pytest.mark.parametrize("raw", ALL_MESSAGES)
def test_every_truncation_is_a_decode_error(raw: bytes) -> None:
    for cut in range(len(raw)):
        with pytest.raises(DecodeError) as exc:
            decode_pgoutput(raw[:cut])
        offset = offset_of(exc)
        assert offset is not None
        assert offset <= cut


@pytest.mark.parametrize("raw", ALL_MESSAGES)
def test_trailing_bytes_are_a_decode_error(raw: bytes) -> None:
    with pytest.raises(DecodeError, match="trailing") as exc:
        decode_pgoutput(raw + b"\0")
    assert offset_of(exc) == len(raw)


def test_insert_truncated_in_column_value_names_offset_and_column() -> None:
    raw = b.insert(1, b.tuple_data("abc", "defgh"))
    # 'I' relid(1-4) 'N'(5) ncols(6-7) 't'(8) len(9-12) "abc" 't'(16) len(17-20)
    with pytest.raises(DecodeError, match=r"Insert at byte 17: column 1 length 5") as exc:
        decode_pgoutput(raw[:-1])
    assert exc.value.kind == "Insert"
    assert exc.value.offset == 17
    with pytest.raises(DecodeError, match=r"Insert at byte 16: truncated.*kind byte of column 1"):
        decode_pgoutput(raw[:16])


def test_bad_tags_and_values() -> None:
    with pytest.raises(DecodeError, match=r"pgoutput at byte 0: unknown message tag 'Z'"):
        decode_pgoutput(b"Z")
    with pytest.raises(DecodeError, match="pgoutput at byte 0: empty"):
        decode_pgoutput(b"")
    with pytest.raises(DecodeError, match=r"Insert at byte 5: got 'X' \(expected 'N'\)"):
        decode_pgoutput(b"I" + (1).to_bytes(4) + b"X" + b.tuple_data())
    with pytest.raises(DecodeError, match=r"Insert at byte 8: unknown column kind 'x'"):
        decode_pgoutput(b.insert(1, b"\0\1x"))
    with pytest.raises(DecodeError, match=r"Insert at byte 6: negative column count"):
        decode_pgoutput(b.insert(1, b"\xff\xff"))
    neg = b"\0\1t\xff\xff\xff\xff"
    with pytest.raises(DecodeError, match=r"Insert at byte 9: column 0 length -1"):
        decode_pgoutput(b.insert(1, neg))
    with pytest.raises(DecodeError, match=r"Delete at byte 5: got 'N' \(expected 'K' or 'O'\)"):
        decode_pgoutput(b.delete(1, b.tuple_data(), b"N"))
    with pytest.raises(DecodeError, match=r"Update at byte \d+: got 'X' \(expected 'N'\)"):
        decode_pgoutput(b.update(1, b.tuple_data(), b.tuple_data(), b"K").replace(b"N", b"X"))
    with pytest.raises(DecodeError, match=r"Relation at byte 5: unterminated string"):
        decode_pgoutput(b"R" + (1).to_bytes(4) + b"public")
    with pytest.raises(DecodeError, match=r"Relation at byte 6: invalid UTF-8"):
        decode_pgoutput(b"R" + (1).to_bytes(4) + b"p\xffx\0t\0d\0\0")
    with pytest.raises(DecodeError, match=r"Truncate at byte 1: negative relation count"):
        decode_pgoutput(b"T" + b"\xff\xff\xff\xff\0")
    with pytest.raises(DecodeError, match=r"Message at byte \d+: negative content length"):
        decode_pgoutput(b.message("p", b"", 0)[:-4] + b"\xff\xff\xff\xff")
    with pytest.raises(DecodeError, match=r"Relation at byte 9: negative column count"):
        decode_pgoutput(b.relation(1, "", "t", [])[:-2] + b"\xff\xfe")


@given(st.binary(max_size=64))
def test_fuzz_never_raises_anything_but_decode_error(raw: bytes) -> None:
    for buf in (raw, b"I" + raw, b"R" + raw, b"U" + raw, b"M" + raw):
        with contextlib.suppress(DecodeError):
            decode_pgoutput(buf)
    for buf in (raw, b"w" + raw, b"k" + raw):
        with contextlib.suppress(DecodeError):
            parse_copy_data(buf)
