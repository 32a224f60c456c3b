"""Which ``--from-lsn`` a replay may start at without skipping a deleted record (pure).

Within a partition the reader writes records in commit order, so the records deleted from
the head of a partition (``kafka-delete-records``, retention) all have a commit LSN at or
below that of the partition's first retained record. A replay from ``from_lsn`` re-drives
every record at or after it only if, in every truncated partition, no deleted record could
be at or after it: ``from_lsn`` must be after the first retained record's transaction, or
exactly at it when that record is its transaction's first event (``idx`` 0: nothing of the
transaction came before it). The safe start is the MAXIMUM of these bounds over the
truncated partitions: the minimum would leave a hole in every other truncated partition.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from replication.lsn import LSN, Position


@dataclass(frozen=True, slots=True)
class PartitionHead:
    """What a partition still holds: its first retained offset and that record's position."""

    partition: int
    begin: int
    end: int
    first: Position | None  # None when the partition holds nothing (or no position)

    @property
    def truncated(self) -> bool:
        return self.begin > 0

    def safe_from(self) -> LSN | None:
        """The smallest from_lsn with no hole here; None when nothing was deleted."""
        if not self.truncated:
            return None
        if self.first is None:
            return None  # emptied: see unknowable()
        lsn = self.first.commit_lsn
        return lsn if self.first.idx == 0 else lsn + 1

    def unknowable(self) -> bool:
        """Every record was deleted: nothing says which commit LSNs are gone."""
        return self.truncated and self.first is None


@dataclass(frozen=True, slots=True)
class Hole:
    """The partitions whose deleted records a range from from_lsn would skip."""

    from_lsn: LSN
    safe_from: LSN | None
    partitions: tuple[int, ...]
    emptied: tuple[int, ...]

    def __str__(self) -> str:
        parts = []
        if self.partitions:
            listed = ", ".join(f"p{p}" for p in self.partitions)
            parts.append(
                f"--from-lsn {self.from_lsn} would skip records deleted from partition(s) "
                f"{listed} of the topic (deleted by retention or kafka-delete-records)"
            )
        if self.emptied:
            listed = ", ".join(f"p{p}" for p in self.emptied)
            parts.append(
                f"every record of partition(s) {listed} was deleted, so no range can be "
                "proven complete"
            )
        fix = (
            f"Use --from-lsn {self.safe_from} or later (events before it cannot be re-driven "
            "from the topic)."
            if self.safe_from is not None and not self.emptied
            else "Re-drive those events another way (emit them again)."
        )
        return "; ".join(parts) + ". " + fix


def safe_start(heads: Iterable[PartitionHead]) -> LSN | None:
    """The smallest from_lsn with no hole in any partition (None: any start is safe)."""
    bounds = [b for h in heads if (b := h.safe_from()) is not None]
    return max(bounds) if bounds else None


def find_hole(heads: Iterable[PartitionHead], from_lsn: LSN) -> Hole | None:
    """The hole a replay from from_lsn would have, or None when it has none."""
    heads = list(heads)
    skipped = tuple(h.partition for h in heads if (b := h.safe_from()) is not None and from_lsn < b)
    emptied = tuple(h.partition for h in heads if h.unknowable())
    if not skipped and not emptied:
        return None
    return Hole(from_lsn, safe_start(heads), skipped, emptied)
