"""JSON text in and out, every number exactly as PostgreSQL keeps it.

jsonb stores any JSON number exactly (as ``numeric``) and prints it without an exponent,
so a record's value may hold numbers a double cannot: an integer past 64 bits, a fraction
with more digits than a double keeps, ``1e-400`` printed as 400 zeros and a one, or
``1e5000`` printed as 5,001 digits. orjson reads the first three as rounded doubles without
a word, so :func:`loads` hands a value that may hold such a number to the standard
library's parser instead, which reads it exactly: an integer as an ``int`` (past
:data:`MAX_INT_DIGITS` digits as a :class:`~decimal.Decimal`), a fraction as a ``float``
when the float is the same number, else as a ``Decimal``. The same fallback takes what
orjson cannot read at all (nesting past 1,024 levels, numbers past a double's range).

:func:`dumps` writes such values back exactly: a ``Decimal`` as its digits, an integer of
any size, any nesting the parser accepted.

Importing this module makes psycopg read every json and jsonb value with :func:`loads`,
in the whole process: psycopg's default, the standard library's parser, raises on an
integer of more than 4,300 digits, and one such number in a queue row stopped the
projection that reads the row back.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Final

import orjson
from psycopg.types.json import set_json_loads

# The nesting the fallback parser accepts (the standard library's parser recurses once
# per level; PostgreSQL's own limit comes from its stack depth, in the thousands).
MAX_JSON_DEPTH: Final = 10_000
# Longer integers become Decimals: Python refuses to read an int of more than 4,300
# digits from text (CVE-2020-10735), and jsonb prints 1e5000 as 5,001 digits.
MAX_INT_DIGITS: Final = 4_000
# A number orjson may round: 16 or more digits and dots in a row (an integer past 64 bits
# has 19 or more digits; a double keeps 15 significant digits for sure; a tiny number is
# printed with its leading zeros). Digits inside a string match too, which only costs the
# slower parser for that value.
_MAYBE_INEXACT: Final = re.compile(rb"[0-9][0-9.]{15}")
# Decimals travel through the standard library's encoder as this marker, then replaced
# by their digits; a string read from jsonb cannot hold U+0000, so no value collides.
_MARK: Final = "\x00decimal\x00"
_MARK_JSON: Final = json.dumps(_MARK)


def _number(text: str) -> float | Decimal:
    """A JSON number with a fraction or exponent: a float when it is the same number."""
    value = float(text)
    if math.isfinite(value) and Decimal(repr(value)) == Decimal(text):
        return value
    return Decimal(text)


def _integer(text: str) -> int | Decimal:
    return int(text) if len(text) <= MAX_INT_DIGITS else Decimal(text)


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


@contextmanager
def _deep() -> Iterator[None]:
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, MAX_JSON_DEPTH + 100))
    try:
        yield
    finally:
        sys.setrecursionlimit(limit)


def loads(value: bytes | str, *, exact: bool = True) -> object:
    """Parse a JSON value, every number exactly (see the module's docstring).

    ``exact=False`` skips the search for numbers orjson would round (about 8 µs per
    500 bytes, most of a small record's parse): for values whose numbers are never
    written back. What orjson cannot read at all still goes to the exact parser.

    Raises ``ValueError`` for text that is not JSON, ``RecursionError`` past
    :data:`MAX_JSON_DEPTH` levels.
    """
    if isinstance(value, str):
        value = value.encode()
    if not exact or _MAYBE_INEXACT.search(value) is None:
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            pass
    with _deep():
        return json.loads(
            value, parse_float=_number, parse_int=_integer, parse_constant=_no_constant
        )


def fragment(obj: object) -> orjson.Fragment:
    """orjson's ``default``: a ``Decimal`` as its digits; raises for anything else."""
    if isinstance(obj, Decimal) and obj.is_finite():
        return orjson.Fragment(str(obj))
    raise TypeError(f"{type(obj).__name__} is not JSON")


def dumps(obj: object) -> str:
    """obj as JSON text, exactly: what :func:`loads` reads comes back the same number.

    orjson, with a ``Decimal`` written as its digits; for what orjson cannot write (an
    integer past 64 bits, nesting past 255 levels) the standard library's encoder.
    Raises ``TypeError`` for what is not JSON (a NaN, a set).
    """
    try:
        return orjson.dumps(obj, default=fragment).decode()
    except TypeError:
        pass
    decimals: list[str] = []

    def default(o: object) -> str:
        fragment(o)  # raises for what is not JSON
        decimals.append(str(o))
        return _MARK

    with _deep():
        text = json.dumps(obj, default=default, allow_nan=False, ensure_ascii=False)
    if not decimals:
        return text
    parts = text.split(_MARK_JSON)
    out = [parts[0]]
    for digits, rest in zip(decimals, parts[1:], strict=True):
        out += (digits, rest)
    return "".join(out)


set_json_loads(loads)
