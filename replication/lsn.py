"""Log sequence numbers and event positions.

An :class:`LSN` is a byte position in PostgreSQL's write-ahead log: a 64-bit unsigned
integer that PostgreSQL prints as two 32-bit halves in uppercase hex, ``16/B374D848``.
It is a type of its own (not a bare ``int``) so that an LSN cannot be compared with,
or added to, an unrelated number by accident.

A :class:`Position` is where an *event* sits in the stream (DESIGN invariant 1): the
commit LSN of its transaction plus its index inside that transaction. Several rows
share one commit LSN (multi-row INSERT, COPY), so the LSN alone is never a key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from replication.errors import LSNParseError

_MAX = (1 << 64) - 1
# Mirrors pg_lsn_in(): 1-8 hex digits, a slash, 1-8 hex digits, nothing else.
_LSN_RE = re.compile(r"([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})")
_POSITION_RE = re.compile(r"([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})#([0-9]{1,10})")


@dataclass(frozen=True, slots=True, order=True)
class LSN:
    """A WAL position: an unsigned 64-bit integer, printed ``X/X`` like PostgreSQL."""

    value: int

    ZERO: ClassVar[LSN]
    MAX: ClassVar[LSN]

    def __post_init__(self) -> None:
        # bool is an int subclass; an LSN built from True is always a bug.
        if type(self.value) is not int:
            raise TypeError(f"LSN value must be an int, not {type(self.value).__name__}")
        if not 0 <= self.value <= _MAX:
            raise ValueError(f"LSN out of range (0..2**64-1): {self.value}")

    @classmethod
    def parse(cls, text: str) -> LSN:
        """Parse PostgreSQL's ``X/X`` text form (hex, either case), e.g. ``16/B374D848``."""
        m = _LSN_RE.fullmatch(text)
        if m is None:
            raise LSNParseError(f"invalid LSN {text!r}: expected X/X with 1-8 hex digits each")
        return cls((int(m[1], 16) << 32) | int(m[2], 16))

    def __str__(self) -> str:
        return f"{self.value >> 32:X}/{self.value & 0xFFFFFFFF:X}"

    def __repr__(self) -> str:
        return f"LSN('{self}')"

    def __int__(self) -> int:
        return self.value

    def __add__(self, nbytes: int) -> LSN:
        """The LSN ``nbytes`` further on (e.g. an XLogData's start plus its payload)."""
        return LSN(self.value + nbytes)

    def __sub__(self, other: LSN) -> int:
        """Distance in bytes between two LSNs (e.g. replication lag)."""
        return self.value - other.value


LSN.ZERO = LSN(0)
LSN.MAX = LSN(_MAX)

_new = object.__new__
_set = object.__setattr__


def lsn_from_uint64(value: int) -> LSN:
    """Build an LSN from a value already known to be a uint64 (``struct`` format ``Q``).

    Skips the range check of ``LSN(value)``: the decoder builds two LSNs per frame, and
    at the reader's frame rates the check is a measurable share of the time
    (docs/benchmarks.md, "Figures the code used to quote").
    """
    lsn: LSN = _new(LSN)
    _set(lsn, "value", value)
    return lsn


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """An event's place in the stream: its transaction's commit LSN and index in it.

    Ordering is the commit order of the events, which is the order of the log.
    Text form: ``X/X#idx``, e.g. ``16/B374D848#2``.
    """

    commit_lsn: LSN
    idx: int

    def __post_init__(self) -> None:
        if type(self.idx) is not int or self.idx < 0:
            raise ValueError(f"Position idx must be a non-negative int, got {self.idx!r}")

    @classmethod
    def parse(cls, text: str) -> Position:
        """Parse the ``X/X#idx`` form produced by ``str(position)``."""
        m = _POSITION_RE.fullmatch(text)
        if m is None:
            raise LSNParseError(f"invalid position {text!r}: expected X/X#idx")
        return cls(LSN((int(m[1], 16) << 32) | int(m[2], 16)), int(m[3]))

    def __str__(self) -> str:
        return f"{self.commit_lsn}#{self.idx}"

    def __repr__(self) -> str:
        return f"Position('{self}')"
