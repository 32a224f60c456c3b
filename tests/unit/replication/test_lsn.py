"""LSN and Position: PostgreSQL's X/X text form, ordering, invariant 1's position."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replication.errors import LSNParseError, ReplicationError
from replication.lsn import LSN, Position, lsn_from_uint64

U64 = st.integers(min_value=0, max_value=2**64 - 1)
HEX = st.from_regex(r"\A[0-9A-Fa-f]{1,8}\Z")


def test_parse_and_print_like_postgresql() -> None:
    lsn = LSN.parse("16/B374D848")
    assert int(lsn) == (0x16 << 32) | 0xB374D848
    assert str(lsn) == "16/B374D848"
    assert repr(lsn) == "LSN('16/B374D848')"
    assert str(LSN.parse("0/0")) == "0/0"
    assert LSN.parse("0/0") == LSN.ZERO
    assert LSN.parse("FFFFFFFF/FFFFFFFF") == LSN.MAX
    assert str(LSN.parse("0/00000A")) == "0/A"  # no zero padding, like pg_lsn_out
    assert str(LSN.parse("ab/cd")) == "AB/CD"  # input is case-insensitive, output upper


@pytest.mark.parametrize(
    "text",
    ["", "16", "16/", "/16", "0x1/0", "1/2/3", " 0/0", "0/0 ", "0/0\n", "G/0", "+1/0",
     "123456789/0", "0/123456789", "-1/0", "\u0663/0", "1 /0"],
)  # fmt: skip
def test_parse_rejects_what_pg_lsn_in_rejects(text: str) -> None:
    with pytest.raises(LSNParseError, match="invalid LSN"):
        LSN.parse(text)


def test_parse_error_is_a_value_error_and_a_replication_error() -> None:
    with pytest.raises(ValueError):
        LSN.parse("nope")
    assert issubclass(LSNParseError, ReplicationError)


@given(U64)
def test_print_parse_round_trip(value: int) -> None:
    lsn = LSN(value)
    text = str(lsn)
    assert text == f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"
    assert LSN.parse(text) == lsn
    assert int(LSN.parse(text)) == value


@given(HEX, HEX)
def test_parse_print_round_trip_from_text(hi: str, lo: str) -> None:
    lsn = LSN.parse(f"{hi}/{lo}")
    assert str(lsn) == f"{int(hi, 16):X}/{int(lo, 16):X}"
    assert LSN.parse(str(lsn)) == lsn


@given(U64, U64)
def test_order_is_numeric_order(a: int, b: int) -> None:
    assert (LSN(a) < LSN(b)) == (a < b)
    assert (LSN(a) == LSN(b)) == (a == b)
    assert (hash(LSN(a)) == hash(LSN(b))) or a != b


def test_range_type_and_immutability() -> None:
    with pytest.raises(ValueError, match="out of range"):
        LSN(-1)
    with pytest.raises(ValueError, match="out of range"):
        LSN(2**64)
    with pytest.raises(TypeError):
        LSN(True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        LSN(1).value = 2  # type: ignore[misc]


def test_arithmetic() -> None:
    assert LSN.parse("0/10") + 0x20 == LSN.parse("0/30")
    assert LSN.parse("1/0") - LSN.parse("0/FFFFFFFF") == 1
    with pytest.raises(ValueError):
        LSN.MAX + 1


@given(U64)
def test_from_uint64_equals_checked_constructor(value: int) -> None:
    assert lsn_from_uint64(value) == LSN(value)
    assert hash(lsn_from_uint64(value)) == hash(LSN(value))


def test_position_orders_by_commit_lsn_then_idx() -> None:
    a = LSN.parse("0/100")
    b = LSN.parse("0/200")
    assert Position(a, 5) < Position(b, 0)
    assert Position(a, 0) < Position(a, 1)
    assert sorted([Position(b, 0), Position(a, 2), Position(a, 0)]) == [
        Position(a, 0),
        Position(a, 2),
        Position(b, 0),
    ]
    # Rows of one multi-row INSERT share a commit LSN and differ only in idx.
    assert Position(a, 0) != Position(a, 1)


@given(U64, st.integers(min_value=0, max_value=10**9))
def test_position_round_trip(value: int, idx: int) -> None:
    pos = Position(LSN(value), idx)
    assert str(pos) == f"{LSN(value)}#{idx}"
    assert Position.parse(str(pos)) == pos


@pytest.mark.parametrize("text", ["0/0", "0/0#", "#1", "0/0#-1", "0/0#1#2", "0/0 #1", "0/0#x"])
def test_position_parse_errors(text: str) -> None:
    with pytest.raises(LSNParseError, match="invalid position"):
        Position.parse(text)


def test_position_rejects_negative_idx() -> None:
    with pytest.raises(ValueError):
        Position(LSN.ZERO, -1)
    assert repr(Position(LSN.parse("1/2"), 3)) == "Position('1/2#3')"
