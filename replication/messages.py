"""Values the replication decoder produces: walsender frames and pgoutput messages.

Frozen, slotted dataclasses, one per message of PostgreSQL's "Streaming Replication
Protocol" (frames) and "Logical Replication Message Formats" (pgoutput protocol version
1, the one the reader asks for: no streamed in-progress transactions, so no xid fields).
Timestamps stay as the protocol's integer microseconds since 2000-01-01 UTC (``*_us``)
so the hot path does no datetime arithmetic; ``commit_time`` properties convert.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from replication.lsn import LSN

PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def pg_time_to_datetime(us: int) -> datetime:
    """Convert a protocol timestamp (microseconds since 2000-01-01 UTC) to a datetime."""
    try:
        return PG_EPOCH + timedelta(microseconds=us)
    except OverflowError as exc:
        raise ValueError(f"PostgreSQL timestamp {us} is outside datetime's range") from exc


# --- walsender frames ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class XLogData:
    """A 'w' frame: a chunk of WAL data (here: one pgoutput message)."""

    wal_start: LSN
    wal_end: LSN
    server_time_us: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class PrimaryKeepalive:
    """A 'k' frame: the server's WAL end, and whether it wants a status update now."""

    wal_end: LSN
    server_time_us: int
    reply_requested: bool


@dataclass(frozen=True, slots=True)
class StandbyStatusUpdate:
    """An 'r' frame, sent by the client: how far it has written, flushed and applied."""

    write: LSN
    flush: LSN
    apply: LSN
    client_time_us: int
    reply_requested: bool


# --- pgoutput messages --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Begin:
    """Start of a transaction. ``final_lsn`` is its commit LSN (known up front)."""

    final_lsn: LSN
    commit_time_us: int
    xid: int

    @property
    def commit_time(self) -> datetime:
        """The commit timestamp as an aware UTC datetime."""
        return pg_time_to_datetime(self.commit_time_us)


@dataclass(frozen=True, slots=True)
class Commit:
    """End of a transaction: ``commit_lsn`` starts the commit record, ``end_lsn`` follows it."""

    flags: int
    commit_lsn: LSN
    end_lsn: LSN
    commit_time_us: int

    @property
    def commit_time(self) -> datetime:
        """The commit timestamp as an aware UTC datetime."""
        return pg_time_to_datetime(self.commit_time_us)


@dataclass(frozen=True, slots=True)
class Origin:
    """The replication origin a transaction came from (sent after Begin, if any)."""

    commit_lsn: LSN
    name: str


@dataclass(frozen=True, slots=True)
class RelationColumn:
    """One column of a Relation message."""

    flags: int
    name: str
    type_oid: int
    type_modifier: int

    @property
    def is_key(self) -> bool:
        """Whether the column is part of the replica identity (flag bit 1)."""
        return bool(self.flags & 1)


@dataclass(frozen=True, slots=True)
class Relation:
    """Describes a table; sent before the first change to it in a session (or on change)."""

    relation_id: int
    namespace: str
    name: str
    replica_identity: str
    columns: tuple[RelationColumn, ...]


@dataclass(frozen=True, slots=True)
class Type:
    """Describes a non-builtin data type used by a following Relation."""

    type_oid: int
    namespace: str
    name: str


@dataclass(frozen=True, slots=True)
class TupleData:
    """A row: per column a kind and a value.

    ``kinds[i]`` is ``'n'`` (NULL), ``'u'`` (unchanged TOASTed value, not sent),
    ``'t'`` (text format) or ``'b'`` (binary format); ``values[i]`` holds the raw
    bytes for ``'t'``/``'b'`` and ``None`` otherwise.
    """

    kinds: str
    values: tuple[bytes | None, ...]

    def text(self, i: int) -> str | None:
        """Column ``i`` decoded as UTF-8 text, or None when NULL or unchanged."""
        value = self.values[i]
        return None if value is None else value.decode()


@dataclass(frozen=True, slots=True)
class Insert:
    """A new row in ``relation_id``."""

    relation_id: int
    new: TupleData


@dataclass(frozen=True, slots=True)
class Update:
    """A changed row. ``old_kind`` is 'K' (key columns only), 'O' (whole old row) or None."""

    relation_id: int
    old_kind: str | None
    old: TupleData | None
    new: TupleData


@dataclass(frozen=True, slots=True)
class Delete:
    """A deleted row, identified by its key ('K') or whole old row ('O')."""

    relation_id: int
    old_kind: str
    old: TupleData


@dataclass(frozen=True, slots=True)
class Truncate:
    """TRUNCATE of one or more relations."""

    options: int
    relation_ids: tuple[int, ...]

    @property
    def cascade(self) -> bool:
        """TRUNCATE ... CASCADE (option bit 1)."""
        return bool(self.options & 1)

    @property
    def restart_identity(self) -> bool:
        """TRUNCATE ... RESTART IDENTITY (option bit 2)."""
        return bool(self.options & 2)


@dataclass(frozen=True, slots=True)
class LogicalMessage:
    """A pg_logical_emit_message() record (only sent with the ``messages`` option)."""

    flags: int
    lsn: LSN
    prefix: str
    content: bytes

    @property
    def transactional(self) -> bool:
        """Whether the message was emitted as part of a transaction (flag bit 1)."""
        return bool(self.flags & 1)


Message = (
    Begin | Commit | Origin | Relation | Type | Insert | Update | Delete | Truncate | LogicalMessage
)
