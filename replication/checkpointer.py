"""The checkpointer: what the slot may confirm. It owns the session's
:class:`~replication.tracker.FlushTracker` (fed by the frame loop and by the committer)
and sends the standby status updates, whose ``flush`` is ``tracker.flushable()``: the
slot never confirms WAL whose events Kafka does not hold (docs/design.md, invariant 2).
"""

from __future__ import annotations

from replication import killpoint
from replication.listener import Listener
from replication.lsn import LSN, lsn_from_uint64
from replication.messages import PrimaryKeepalive
from replication.reader_config import ReaderStats
from replication.tracker import FlushTracker


class Checkpointer:
    """The flush position of one session and the status updates that report it."""

    __slots__ = ("sent_flush", "stats", "tracker")

    def __init__(self, start: LSN, stats: ReaderStats) -> None:
        """``start``: the slot's confirmed position (or, for a new slot, its consistent
        point): nothing below it is ever reported."""
        self.tracker = FlushTracker(start)
        self.stats = stats
        self.sent_flush = LSN.ZERO

    async def keepalive(
        self, msg: PrimaryKeepalive, in_txn: bool, received: int, listener: Listener
    ) -> None:
        """A primary keepalive: between transactions the flush position may follow the
        server's WAL end; a reply requested is sent at once."""
        self.stats.server_wal_end = msg.wal_end
        if not in_txn:
            self.tracker.note_keepalive(msg.wal_end)
        if msg.reply_requested:
            await self.status(listener, received)

    async def status(self, listener: Listener, received: int) -> None:
        """Send a status update: written up to the highest WAL end ``received`` (an int,
        as the frame loop keeps it), flushed up to what Kafka holds."""
        flush = self.tracker.flushable()
        if flush > self.sent_flush:
            killpoint.reached("reader.after_ack_before_flush")
        await listener.send_status(max(lsn_from_uint64(received), flush), flush)
        self.sent_flush = flush
        self.stats.confirmed_lsn = flush
        self.stats.pending_transactions = self.tracker.pending_transactions
