"""JSON read exactly: arbitrary-precision numbers and no depth limit, the oracle for
values orjson cannot read (deep nesting, 1e309, 50 digits). Shared by the unit and the
integration tests."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

DEEP = "[" * 1100 + '"bottom"' + "]" * 1100


@contextmanager
def _deep_recursion() -> Iterator[None]:
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)
    try:
        yield
    finally:
        sys.setrecursionlimit(limit)


def _integer(text: str) -> int | Decimal:
    # Python reads no int of more than 4,300 digits from text; jsonb prints 1e5000 whole.
    return int(text) if len(text) <= 4000 else Decimal(text)


def exact(value: bytes | str) -> object:
    """The value parsed with arbitrary-precision numbers and no depth limit."""
    with _deep_recursion():
        return json.loads(value, parse_float=Decimal, parse_int=_integer)


def same(a: object, b: object) -> bool:
    """a == b, with room for comparing 1,100 levels."""
    with _deep_recursion():
        return a == b
