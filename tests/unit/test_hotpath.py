"""The reader's fast reading of Begin/Insert/Commit frames against the full decoder."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replication.decoder import decode_pgoutput, parse_copy_data
from replication.errors import DecodeError
from replication.hotpath import (
    BEGIN,
    COMMIT,
    INSERT,
    PAYLOAD,
    CommitTimeText,
    begin,
    commit,
    insert,
    lsn_text,
    payload_tag,
    wal_end,
)
from replication.lsn import LSN
from replication.messages import Begin, Commit, Insert, XLogData, pg_time_to_datetime
from tests.unit import pgoutput_builder as b


def w(payload: bytes, wal_end: int = 0x16B374D848) -> bytes:
    return b.xlogdata(0x16B3740000, wal_end, 1234, payload)


def test_frames_of_one_transaction_read_like_the_decoder() -> None:
    frames = [
        w(b.begin(0x16B374D848, 817_000_000_123_456, 4242)),
        w(b.insert(16384, b.domain_event_tuple())),
        w(b.insert(16384, b.tuple_data("x", None, b.UNCHANGED))),
        w(b.commit(0x16B374D848, 0x16B374D878, 817_000_000_123_456)),
    ]
    for frame in frames:
        xlog = parse_copy_data(frame)
        assert isinstance(xlog, XLogData)
        assert wal_end(frame) == xlog.wal_end.value
        msg = decode_pgoutput(xlog.payload)
        tag = payload_tag(frame)
        if isinstance(msg, Begin):
            assert tag == BEGIN
            assert begin(frame) == (msg.final_lsn.value, msg.commit_time_us, msg.xid)
        elif isinstance(msg, Insert):
            assert tag == INSERT
            assert insert(frame) == (msg.relation_id, msg.new)
        else:
            assert isinstance(msg, Commit)
            assert tag == COMMIT
            assert commit(frame) == (
                msg.flags,
                msg.commit_lsn.value,
                msg.end_lsn.value,
                msg.commit_time_us,
            )


def test_golden_frames_read_like_the_decoder() -> None:
    for raw in b.read_frames("multi_row_insert.bin") + b.read_frames("unicode.bin"):
        tag = payload_tag(raw)
        if tag == 0:
            continue
        msg = decode_pgoutput(raw[PAYLOAD:])
        if tag == INSERT:
            assert isinstance(msg, Insert)
            assert insert(raw) == (msg.relation_id, msg.new)
        elif tag == BEGIN:
            assert isinstance(msg, Begin)
            assert begin(raw)[0] == msg.final_lsn.value


def test_other_frames_have_no_tag() -> None:
    assert payload_tag(b.keepalive(1, 2, True)) == 0
    assert payload_tag(b"w" + b"\0" * 24) == 0  # empty payload: the decoder's case
    assert payload_tag(b"") == 0


@pytest.mark.parametrize(
    ("fn", "payload"),
    [
        (begin, b.begin(1, 2, 3)[:-1]),
        (begin, b.begin(1, 2, 3) + b"\0"),
        (commit, b.commit(1, 2, 3)[:-2]),
        (insert, b.insert(1, b.tuple_data("abc"))[:-1]),
        (insert, b.insert(1, b.tuple_data("abc")) + b"x"),
        (insert, b"I\0\0\0\1X" + b.tuple_data("abc")),
        (insert, b"I\0\0"),
    ],
)
def test_bad_layouts_raise_the_decoders_error(fn: object, payload: bytes) -> None:
    with pytest.raises(DecodeError) as fast:
        fn(w(payload))  # type: ignore[operator]
    with pytest.raises(DecodeError) as full:
        decode_pgoutput(payload)
    assert str(fast.value) == str(full.value)


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_lsn_text(value: int) -> None:
    assert lsn_text(value) == str(LSN(value)).encode()


@given(
    st.lists(
        st.integers(min_value=-(2**46), max_value=2**48).map(lambda us: us - us % 7), max_size=20
    )
)
def test_commit_time_text_matches_isoformat(values: list[int]) -> None:
    text = CommitTimeText()
    for us in [*sorted(values), 0, 1_000_000, 999_999]:
        assert text(us) == pg_time_to_datetime(us).isoformat().encode()


def test_commit_time_text_out_of_range() -> None:
    with pytest.raises(ValueError):
        CommitTimeText()(2**62)
