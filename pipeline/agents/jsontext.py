"""Parsing the JSON of a record's value: orjson, and a careful fallback for what it cannot read.

The value carries jsonb exactly as PostgreSQL printed it, so it may hold what orjson
cannot read (nesting past 1024 levels, numbers past a double's range): :func:`loads`
then falls back to the standard library's parser with a higher depth limit, numbers
past a double's range as :class:`~decimal.Decimal`.
"""

from __future__ import annotations

import json
import math
import sys
from decimal import Decimal
from typing import Final

import orjson

# The nesting the fallback parser accepts (the standard library's parser recurses once
# per level; PostgreSQL's own limit comes from its stack depth, in the thousands).
MAX_JSON_DEPTH: Final = 10_000


def _number(text: str) -> float | Decimal:
    """A JSON number with a fraction or exponent: a float where one holds it, else exact."""
    value = float(text)
    return value if math.isfinite(value) else Decimal(text)


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def loads(value: bytes) -> object:
    """Parse a JSON value: orjson, or for what it cannot read the careful fallback.

    Raises ``ValueError`` for text that is not JSON, ``RecursionError`` past
    :data:`MAX_JSON_DEPTH` levels.
    """
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        pass
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, MAX_JSON_DEPTH + 100))
    try:
        return json.loads(value, parse_float=_number, parse_constant=_no_constant)
    finally:
        sys.setrecursionlimit(limit)
