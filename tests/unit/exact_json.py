"""JSON read exactly: arbitrary-precision numbers and no depth limit, the oracle for
values orjson cannot read (deep nesting, 1e309, 50 digits)."""

from __future__ import annotations

import json
import sys
from decimal import Decimal

DEEP = "[" * 1100 + '"bottom"' + "]" * 1100


def exact(value: bytes) -> object:
    """The value parsed with arbitrary-precision numbers and no depth limit."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)
    try:
        return json.loads(value, parse_float=Decimal, parse_int=int)
    finally:
        sys.setrecursionlimit(limit)


def same(a: object, b: object) -> bool:
    """a == b, with room for comparing 1,100 levels."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)
    try:
        return a == b
    finally:
        sys.setrecursionlimit(limit)
