"""The flush tracker: which WAL position is durable in Kafka (DESIGN invariant 2).

The reader tells the tracker about each transaction in commit order (its commit LSN,
end LSN and number of events) and about each Kafka delivery report (by event
:class:`~replication.lsn.Position`). :meth:`FlushTracker.flushable` answers the LSN
that may be sent as ``flush`` in a standby status update, i.e. stored as the slot's
confirmed_flush_lsn, after which PostgreSQL will never send those changes again.

Why the *end* LSN of a commit, not its commit LSN: logical decoding skips a
transaction on restart only if its commit record starts *before* the confirmed
position (``SnapBuildXactNeedsSkip``: ``commit_lsn < start_decoding_at``). Confirming
a transaction's ``commit_lsn`` would therefore make PostgreSQL send it once more;
confirming its ``end_lsn`` (the LSN just after the commit record, pgoutput's Commit
"end LSN") marks exactly that transaction as done. PostgreSQL's own apply worker
reports ``end_lsn`` for the same reason (``store_flush_position(commit_data.end_lsn)``).

Cost is O(1) amortised per event: a deque of pending transactions in commit order, a
dict from commit LSN to transaction, and per transaction the set of acked indexes
(a set, not a counter, so a duplicate delivery report cannot complete a transaction
early).
"""

from __future__ import annotations

from collections import deque

from replication.errors import TrackerError
from replication.lsn import LSN, Position


class _Txn:
    # LSNs as ints: the tracker handles one of these per transaction of the stream.
    __slots__ = ("acked", "commit", "end", "expected")

    def __init__(self, commit: int) -> None:
        self.commit = commit
        self.end = 0  # set by register; 0 while the transaction is still arriving
        self.expected: int | None = None
        self.acked: set[int] = set()

    def complete(self) -> bool:
        return self.expected is not None and len(self.acked) == self.expected


class FlushTracker:
    """Computes the highest LSN whose every preceding event has been acked by Kafka.

    Usage, in stream order: ``begin_at(commit_lsn)`` on a Begin (optional, lets acks
    arrive before the Commit is seen), ``register_at(commit_lsn, end_lsn, n)`` on the
    Commit (LSNs as ints: the reader's hot path calls both once per transaction),
    ``ack(position)`` / ``ack_streamed(positions)`` from delivery reports (any order),
    ``note_keepalive(wal_end)`` on each keepalive, and ``flushable()`` when sending a
    status update. A delivery that fails is never reported here: the session ends
    (:class:`~replication.errors.DeliveryError`) and the next one resumes from the slot.
    """

    __slots__ = ("_by_lsn", "_flushed", "_last_commit", "_pending")

    def __init__(self, start: LSN = LSN.ZERO) -> None:
        """``start`` is the slot's confirmed_flush_lsn: nothing below it is reported."""
        self._pending: deque[_Txn] = deque()
        # Keyed by the LSN's int: hashing an int is much cheaper than the dataclass.
        self._by_lsn: dict[int, _Txn] = {}
        self._flushed = start
        self._last_commit = -1  # the last commit LSN begun or registered, as an int

    @property
    def flushed(self) -> LSN:
        """The last value computed by :meth:`flushable` or a keepalive (never decreases)."""
        return self._flushed

    @property
    def pending_transactions(self) -> int:
        """Transactions begun or registered whose events are not all acked yet."""
        self._advance()
        return len(self._pending)

    def begin_at(self, commit_lsn: int) -> None:
        """Announce a transaction being received (``Begin.final_lsn`` is its commit LSN).

        Until it is registered, keepalives do not advance the flush position.
        """
        self._append(commit_lsn)

    def register_at(self, commit: int, end: int, n_events: int) -> None:
        """Record a committed transaction: its commit LSN, end LSN and event count.

        Transactions must come in commit order. ``n_events`` may be 0 (a transaction
        with no ``domain_events`` row): it becomes flushable as soon as every earlier
        one is.
        """
        if n_events < 0:
            raise TrackerError(f"negative event count {n_events} for commit_lsn={LSN(commit)}")
        if end <= commit:
            raise TrackerError(f"end_lsn={LSN(end)} is not after commit_lsn={LSN(commit)}")
        txn = self._by_lsn.get(commit)
        if txn is None:
            txn = self._append(commit)
        elif txn.expected is not None:
            raise TrackerError(f"transaction commit_lsn={LSN(commit)} registered twice")
        elif txn is not self._pending[-1]:
            raise TrackerError(f"commit_lsn={LSN(commit)} registered after a later Begin")
        reported = txn.acked
        if reported and max(reported) >= n_events:
            raise TrackerError(
                f"commit_lsn={LSN(commit)} has {n_events} event(s) but idx {max(reported)} "
                "was already reported"
            )
        txn.end = end
        txn.expected = n_events

    def ack(self, pos: Position) -> None:
        """Record that Kafka has durably accepted the event at ``pos``."""
        txn = self._txn(pos)
        if pos.idx in txn.acked:
            raise TrackerError(f"duplicate ack for position {pos}")
        txn.acked.add(pos.idx)

    def ack_streamed(self, positions: list[Position]) -> None:
        """:meth:`ack` for each position of the slot's stream; snapshot rows (commit LSN
        0/0, not in the stream) are skipped. One call per Kafka batch."""
        ack = self.ack
        for pos in positions:
            if pos.commit_lsn.value != 0:
                ack(pos)

    def note_keepalive(self, wal_end: LSN) -> None:
        """Let the flush position follow a keepalive's wal_end while nothing is in flight.

        Call in stream order, after handling every frame received before the
        keepalive. With nothing pending, everything the server sent up to
        ``wal_end`` is durable (or was not for us), so confirming it stops an idle
        publication from pinning WAL on the server.
        """
        self._advance()
        if not self._pending and wal_end > self._flushed:
            self._flushed = wal_end

    def flushable(self) -> LSN:
        """The LSN to report as flushed: the end LSN of the last fully acked prefix.

        Never lower than a value reported before.
        """
        self._advance()
        return self._flushed

    def _append(self, commit: int) -> _Txn:
        if commit <= self._last_commit:
            raise TrackerError(
                f"commit_lsn={LSN(commit)} is not after the previous commit_lsn="
                f"{LSN(self._last_commit)}: transactions must arrive in commit order"
            )
        txn = _Txn(commit)
        self._pending.append(txn)
        self._by_lsn[commit] = txn
        self._last_commit = commit
        return txn

    def _txn(self, pos: Position) -> _Txn:
        txn = self._by_lsn.get(pos.commit_lsn.value)
        if txn is None:
            raise TrackerError(
                f"position {pos} belongs to no pending transaction "
                "(never begun/registered, or already flushed: a duplicate report)"
            )
        if txn.expected is not None and pos.idx >= txn.expected:
            raise TrackerError(f"position {pos} is beyond the transaction's {txn.expected} events")
        return txn

    def _advance(self) -> None:
        pending = self._pending
        end = self._flushed.value
        while pending and pending[0].complete():
            txn = pending.popleft()
            del self._by_lsn[txn.commit]
            end = max(end, txn.end)
        if end > self._flushed.value:
            self._flushed = LSN(end)
