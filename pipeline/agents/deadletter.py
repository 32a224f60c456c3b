"""What a dead-lettered record carries (DESIGN.md invariant 7). Pure.

The dead-letter record keeps the original key, value and headers byte for byte (so it can
be re-produced once fixed) and adds headers naming the reason and where the record came
from. ``commit_lsn`` and ``idx`` are among the original headers when the reader set them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from pipeline.agents.errors import RecordRejected

Headers = Sequence[tuple[str, bytes]]

# Headers this module sets; a record dead-lettered twice (re-produced, rejected again)
# carries only the latest values.
DLQ_HEADERS: Final = frozenset(
    {
        "reason",
        "reason_kind",
        "original_topic",
        "original_partition",
        "original_offset",
        "dead_letter_key",
    }
)
_MAX_REASON: Final = 2000


def dead_letter_headers(
    original: Headers | None,
    rejection: RecordRejected,
    *,
    topic: str,
    partition: int,
    offset: int,
) -> list[tuple[str, bytes]]:
    """The headers of the dead-letter copy of a record."""
    kept = [(name, value) for name, value in original or () if name not in DLQ_HEADERS]
    return [
        *kept,
        ("reason", str(rejection)[:_MAX_REASON].encode()),
        ("reason_kind", rejection.kind.encode()),
        ("original_topic", topic.encode()),
        ("original_partition", str(partition).encode()),
        ("original_offset", str(offset).encode()),
    ]
