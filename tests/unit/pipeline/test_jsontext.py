"""pipeline.jsontext: JSON in and out with every number exactly as jsonb keeps it (pure).

The oracle is the standard library's parser with arbitrary precision (tests/exact_json.py);
the texts are the ones PostgreSQL prints for jsonb (plain digits, no exponent).
"""

from __future__ import annotations

import json
from decimal import Decimal

import orjson
import pytest
from psycopg.types.json import JsonbBinaryLoader

from pipeline import jsontext
from tests.exact_json import DEEP, exact, same

# What jsonb prints for numbers a double cannot hold, and some it can.
INEXACT_FOR_ORJSON = [
    b"1234567890123456789012345",  # past 64 bits
    b"18446744073709551616",  # 2**64
    b"-9223372036854775809",  # below int64
    b"0.1000000000000000055511151231257827",  # more digits than a double keeps
    b"0." + b"0" * 399 + b"1",  # 1e-400 as jsonb prints it
]
EXACT_FOR_ORJSON = [b"18446744073709551615", b"-9223372036854775808", b"19.99", b"0.5", b"1"]
REFUSED_BY_ORJSON = [b"1" + b"0" * 400, b"15" + b"0" * 399, b"1" + b"0" * 5000]  # 1e400, 1e5000


@pytest.mark.parametrize("number", INEXACT_FOR_ORJSON + EXACT_FOR_ORJSON + REFUSED_BY_ORJSON)
def test_every_number_is_read_and_written_exactly(number: bytes) -> None:
    text = b'{"n": ' + number + b', "list": [' + number + b", 2.5]}"
    value = jsontext.loads(text)
    assert isinstance(value, dict)
    assert exact(text) == exact(jsontext.dumps(value))
    assert Decimal(str(value["n"])) == Decimal(number.decode())


@pytest.mark.parametrize("number", INEXACT_FOR_ORJSON)
def test_orjson_alone_would_round_these(number: bytes) -> None:
    """The reason for the module: orjson reads them without complaint, as another number."""
    assert Decimal(repr(orjson.loads(number))) != Decimal(number.decode())


def test_numbers_a_double_holds_stay_floats_and_ints() -> None:
    value = jsontext.loads(b'{"a": 19.99, "b": 0.5, "c": 18446744073709551615, "d": -3}')
    assert value == {"a": 19.99, "b": 0.5, "c": 18446744073709551615, "d": -3}
    assert [type(v) for v in value.values()] == [float, float, int, int]  # type: ignore[union-attr]


def test_a_fraction_a_double_cannot_hold_is_a_decimal() -> None:
    value = jsontext.loads(b"[0.1000000000000000055511151231257827]")
    assert value == [Decimal("0.1000000000000000055511151231257827")]


def test_without_exact_the_fast_path_is_orjson_s() -> None:
    """``exact=False`` is for values whose numbers are never written back: orjson's
    double, as before; what orjson refuses is still read exactly."""
    assert jsontext.loads(b"[1234567890123456789012345]", exact=False) == [1.2345678901234568e24]
    assert jsontext.loads(b"[1" + b"0" * 400 + b"]", exact=False) == [10**400]


def test_digits_inside_strings_only_cost_the_slower_parser() -> None:
    text = b'{"phone": "+49 1511234567890123", "n": 7, "ts": "2026-12-02T13:34:40.397369+00:00"}'
    assert jsontext.loads(text) == orjson.loads(text)


def test_text_and_str_and_deep_nesting() -> None:
    assert jsontext.loads('{"é": [1, null, true]}') == {"é": [1, None, True]}
    deep = jsontext.loads(DEEP)
    assert same(deep, exact(DEEP))
    assert same(exact(jsontext.dumps(deep)), exact(DEEP))


@pytest.mark.parametrize("text", [b"NaN", b"[Infinity]", b"{", b'{"a": 1,}'])
def test_what_is_not_json_is_a_value_error(text: bytes) -> None:
    with pytest.raises(ValueError):
        jsontext.loads(text)


def test_dumps_writes_big_integers_and_decimals_as_digits() -> None:
    value = {"a": 2**70, "b": Decimal("1E+400"), "c": "é\u2028", "d": [[Decimal("2.50")]]}
    text = jsontext.dumps(value)
    assert exact(text) == {
        "a": 2**70,
        "b": Decimal("1E+400"),
        "c": "é\u2028",
        "d": [[Decimal("2.50")]],
    }
    # The fast path (no integer past 64 bits) writes Decimals as digits too.
    assert jsontext.dumps({"x": Decimal("0.1000000000000000055511151231257827")}) == (
        '{"x":0.1000000000000000055511151231257827}'
    )
    assert json.loads(jsontext.dumps({"marker": "\x00decimal\x00", "n": 2**70})) == {
        "marker": "\x00decimal\x00",
        "n": 2**70,
    }


@pytest.mark.parametrize("bad", [{1, 2}, Decimal("NaN"), Decimal("Infinity"), object()])
def test_dumps_refuses_what_is_not_json(bad: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        jsontext.dumps({"v": bad, "big": 2**70})
    with pytest.raises((TypeError, ValueError)):
        jsontext.dumps({"v": bad})


def test_psycopg_reads_jsonb_with_it() -> None:
    """Importing the module makes psycopg's jsonb loader exact (the queue projection reads
    its rows back; the standard library's parser raises past 4,300 digits)."""
    loaded = JsonbBinaryLoader(0).load(b"\x01" + b'{"n": 1' + b"0" * 5000 + b"}")
    assert loaded == {"n": Decimal("1" + "0" * 5000)}
