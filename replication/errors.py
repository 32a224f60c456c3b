"""Errors raised by the ``replication`` package.

One base class, :class:`ReplicationError`, so a caller can catch everything this
package raises in one place and decide retry-or-stop there; subclasses say *what*
went wrong precisely enough for an operator to act on the message alone.
"""

from __future__ import annotations


class ReplicationError(Exception):
    """Base class of every error raised by the ``replication`` package."""


# --- the replication connection (replication.wire) ------------------------------------


class ServerError(ReplicationError):
    """The server answered a command with an error."""

    def __init__(self, message: str, sqlstate: str | None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class StreamClosed(ReplicationError):
    """The server ended the COPY stream or the connection dropped."""


class LSNParseError(ReplicationError, ValueError):
    """A text LSN or position is not in PostgreSQL's ``X/X`` form.

    Also a :class:`ValueError`, so code that treats bad input generically still works.
    """


class DecodeError(ReplicationError):
    """A walsender frame, pgoutput message or row could not be decoded.

    The message always says where: the message kind, the byte offset inside the
    buffer (when the problem is at a byte position) and what was expected there.
    """

    def __init__(
        self,
        reason: str,
        *,
        kind: str | None = None,
        offset: int | None = None,
        expected: str | None = None,
    ) -> None:
        self.reason = reason
        self.kind = kind
        self.offset = offset
        self.expected = expected
        where = kind or "message"
        if offset is not None:
            where = f"{where} at byte {offset}"
        text = f"{where}: {reason}"
        if expected is not None:
            text = f"{text} (expected {expected})"
        super().__init__(text)


class UnknownRelationError(DecodeError):
    """A change refers to a relation id for which no Relation message was seen.

    pgoutput sends a Relation message before the first change to each table in a
    session, so this means messages were lost or decoded out of order.
    """


class TrackerError(ReplicationError):
    """The flush tracker was used in a way that would break DESIGN invariant 2.

    Examples: an ack for a position that was never registered (or acked twice),
    transactions registered out of commit order.
    """


# --- the reader's preflight and connection errors (each carries an operator hint) ---------


class ReaderSetupError(ReplicationError):
    """The database is not set up for the reader; retrying will not help.

    ``hint`` says what the operator has to change.
    """

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(f"{message}. Hint: {hint}")
        self.hint = hint


class WalLevelError(ReaderSetupError):
    """``wal_level`` is not ``logical``."""


class ReplicationPrivilegeError(ReaderSetupError):
    """The role may not open a replication connection."""


class PoolerError(ReaderSetupError):
    """The DSN reaches a connection pooler, which cannot carry logical replication."""


class SlotMismatchError(ReaderSetupError):
    """The slot exists with another plugin or on another database."""


class PublicationError(ReaderSetupError):
    """The publication is missing or does not cover the table."""


class TopicLayoutError(ReaderSetupError):
    """A topic exists with another partition count than the configured one, or cannot be
    created (replication.topics)."""


class SlotInUse(ReplicationError):
    """Another process holds the slot; the reader waits and takes over when it is free."""

    def __init__(self, slot: str, pid: int | None) -> None:
        super().__init__(f"replication slot {slot!r} is active for pid {pid}")
        self.slot = slot
        self.pid = pid


class DeliveryError(ReplicationError):
    """Kafka did not accept an event; the session stops so nothing past it is flushed."""
