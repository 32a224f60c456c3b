"""The reader's fast reading of Begin/Insert/Commit frames against the full decoder."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from replication.decoder import decode_pgoutput, parse_copy_data
from replication.errors import DecodeError
from replication.frame_loop import (
    BEGIN,
    COMMIT,
    INSERT,
    PAYLOAD,
    CommitTimeText,
    FrameLoop,
    begin,
    commit,
    insert,
    lsn_text,
    payload_tag,
    wal_end,
)
from replication.lsn import LSN, Position
from replication.messages import Begin, Commit, Insert, Relation, XLogData, pg_time_to_datetime
from replication.rows import RelationCache
from replication.tracker import FlushTracker
from replication.value_encoder import ValueEncoder
from tests.unit import pgoutput_builder as b
from tests.unit.pgoutput_fixtures import messages


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


# --- FrameLoop: the reader's loop over Begin/Insert/Commit ---------------------------------


class _Sink:
    def __init__(self) -> None:
        self.events: list[tuple[Position, bytes, bytes, list[tuple[str, bytes]]]] = []

    def add(
        self, pos: Position, key: bytes, value: bytes, headers: list[tuple[str, bytes]]
    ) -> None:
        self.events.append((pos, key, value, headers))


def _loop(max_in_flight: int = 1000) -> tuple[FrameLoop, _Sink, FlushTracker, RelationCache]:
    relations = RelationCache()
    sink = _Sink()
    tracker = FlushTracker()
    return (
        FrameLoop(ValueEncoder(relations).encode, sink.add, tracker, max_in_flight),
        sink,
        tracker,
        relations,
    )


def _drive(loop: FrameLoop, relations: RelationCache, frames: list[bytes]) -> list[int]:
    """Run the loop as the session does; the indexes of the frames it stopped at."""
    stops = []
    i = 0
    while i < len(frames):
        i = loop.run(frames, i)
        if i < len(frames):
            stops.append(i)
            if payload_tag(frames[i]) == INSERT:  # a row to dead-letter
                loop.idx += 1
            else:
                msg = parse_copy_data(frames[i])
                if isinstance(msg, XLogData):
                    rel = decode_pgoutput(msg.payload)
                    if isinstance(rel, Relation):
                        relations.add(rel)
            i += 1
    return stops


@pytest.mark.parametrize("name", ["multi_row_insert.bin", "copy.bin", "unicode.binary.bin"])
def test_frame_loop_sends_what_the_decoder_reads(name: str) -> None:
    frames = b.read_frames(name)
    loop, sink, tracker, relations = _loop()
    stops = _drive(loop, relations, frames)
    assert all(payload_tag(frames[i]) not in (BEGIN, COMMIT, INSERT) for i in stops)
    # What the decoder makes of the same frames.
    expected = []
    cache = RelationCache()
    encoder = ValueEncoder(cache)
    commit_lsn, xid, idx, commit_ts = LSN.ZERO, 0, 0, b""
    for msg in messages(frames, cache):
        if isinstance(msg, Begin):
            commit_lsn, xid, idx = msg.final_lsn, msg.xid, 0
            commit_ts = pg_time_to_datetime(msg.commit_time_us).isoformat().encode()
        elif isinstance(msg, Insert):
            key, value, _ = encoder.encode(msg.relation_id, msg.new)
            headers = [
                ("commit_lsn", str(commit_lsn).encode()),
                ("idx", str(idx).encode()),
                ("xid", str(xid).encode()),
                ("commit_ts", commit_ts),
                # The type as the value carries it (parsed here, never by the reader).
                ("event_type", orjson.loads(value)["event_type"].encode()),
            ]
            expected.append((Position(commit_lsn, idx), key, value, headers))
            idx += 1
    assert sink.events == expected
    for (pos, *_), (want, *_) in zip(sink.events, expected, strict=True):
        # Built without Position's __init__: still an ordinary, hashable, ordered Position.
        assert type(pos) is Position
        assert hash(pos) == hash(want)
        assert str(pos) == str(want)
    assert loop.events == loop.in_flight == len(expected) > 0
    assert loop.transactions == 1
    assert not loop.in_txn
    assert loop.received == max(wal_end(f) for f in frames if payload_tag(f))
    for pos, *_ in sink.events:
        tracker.ack(pos)
    assert tracker.flushable() > LSN.ZERO  # the transaction was begun and registered


def _transaction(lsn: int, rows: list[bytes]) -> list[bytes]:
    return [
        w(b.begin(lsn, 817_000_000_000_000, 7)),
        *(w(b.insert(16384, row)) for row in rows),
        w(b.commit(lsn, lsn + 40, 817_000_000_000_000)),
    ]


def test_frame_loop_stops_where_the_session_must_act() -> None:
    relation = w(b.relation(16384, "public", "domain_events", b.DOMAIN_EVENTS_COLUMNS))
    good = b.domain_event_tuple()
    bad = b.domain_event_tuple(stream_version="x")
    frames = [
        relation,
        *_transaction(0x1000, [good, bad, good]),
        b.keepalive(0x2000, 0, False),
    ]
    loop, sink, _, relations = _loop()
    # The Relation, the row that cannot be converted, the keepalive.
    assert _drive(loop, relations, frames) == [0, 3, 6]
    assert [pos.idx for pos, *_ in sink.events] == [0, 2]


def test_frame_loop_holds_back_at_max_in_flight() -> None:
    loop, sink, _, relations = _loop(max_in_flight=2)
    relations.add(
        decode_pgoutput(b.relation(16384, "public", "domain_events", b.DOMAIN_EVENTS_COLUMNS))  # type: ignore[arg-type]
    )
    frames = _transaction(0x1000, [b.domain_event_tuple()] * 3)
    assert loop.run(frames, 0) == 3  # the third Insert waits
    assert loop.run(frames, 3) == 3
    loop.in_flight -= 1  # an ack
    assert loop.run(frames, 3) == len(frames)
    assert [pos.idx for pos, *_ in sink.events] == [0, 1, 2]


def test_frame_loop_leaves_an_insert_outside_a_transaction_to_the_session() -> None:
    loop, _, _, _ = _loop()
    assert loop.run([w(b.insert(16384, b.domain_event_tuple()))], 0) == 0


# --- the event_type header -----------------------------------------------------------------

EVENT_TYPES = [
    "organization.bootstrap.initiated",
    'say "hi"',  # quotes: escaped in the value
    "back\\slash\\\\twice",
    "tab\tnew\nline\x01",  # control characters: escaped in the value
    "ünïcødé.événement 🚀 𠜎",  # not escaped: UTF-8 in the value as in the header
    "",
]


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_record_carries_its_event_type_header(event_type: str, binary: bool) -> None:
    relation = w(b.relation(16384, "public", "domain_events", b.DOMAIN_EVENTS_COLUMNS))
    column: object = ("b", event_type.encode()) if binary else event_type
    # A key named event_type inside event_data, and a stream type spelling the field,
    # must not be taken for the type.
    decoys = {
        "event_data": '{"event_type": "decoy", "x": ",\\"event_type\\":\\"decoy\\""}',
        "stream_type": ',"event_type":"decoy"',
    }
    rows = [
        b.domain_event_tuple(event_type=column),
        b.domain_event_tuple(event_type=column, **decoys),
    ]
    loop, sink, _, relations = _loop()
    assert _drive(loop, relations, [relation, *_transaction(0x1000, rows)]) == [0]
    assert len(sink.events) == 2
    for _, _, value, headers in sink.events:
        assert dict(headers)["event_type"] == event_type.encode()
        assert orjson.loads(value)["event_type"] == event_type
        assert [name for name, _ in headers] == [
            "commit_lsn",
            "idx",
            "xid",
            "commit_ts",
            "event_type",
        ]


@given(st.text(max_size=40))
def test_the_event_type_header_is_the_types_utf8_for_any_text(event_type: str) -> None:
    # PostgreSQL text cannot hold NUL; lone surrogates are no UTF-8.
    event_type = event_type.replace("\x00", "").encode("utf-8", "ignore").decode()
    relation = w(b.relation(16384, "public", "domain_events", b.DOMAIN_EVENTS_COLUMNS))
    loop, sink, _, relations = _loop()
    frames = [relation, *_transaction(0x1000, [b.domain_event_tuple(event_type=event_type)])]
    _drive(loop, relations, frames)
    ((_, _, value, headers),) = sink.events
    assert dict(headers)["event_type"] == event_type.encode()
    assert orjson.loads(value)["event_type"] == event_type
