"""What a replication session is written against: the replication connection and the
Kafka producer, as Protocols (as :class:`replication.batcher.BatchProducer` is for the
batcher). :class:`replication.wire.ReplicationWire` and
:class:`replication.producer.EventProducer` are the real ones; the unit tests drive a
whole session with stand-ins (tests/unit/replication/test_session.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from replication.batcher import AcksCallback
from replication.frame_loop import Add, Headers
from replication.lsn import Position

# Given the partition count, the position of the last record of each partition of the
# topic (None: no record of the stream there yet).
ResumeReader = Callable[[int], Awaitable[dict[int, Position | None]]]


class ReplicationStream(Protocol):
    """A replication connection: commands, then the COPY_BOTH stream."""

    # Called when the stream has nothing more to read for now (the reader caught up).
    on_idle: Callable[[], None] | None

    @property
    def server_version(self) -> int:
        """PostgreSQL's version number (e.g. 150004)."""
        ...

    async def query(self, sql: str) -> list[list[str | None]]:
        """Run a replication command; its rows as text."""
        ...

    async def start_copy(self, sql: str) -> None:
        """Send START_REPLICATION; return once the server streams."""
        ...

    async def read_batch(self, timeout: float, limit: int = 512) -> list[bytes]:  # noqa: ASYNC109
        """The CopyData frames received, waiting up to ``timeout`` for the first."""
        ...

    async def write(self, payload: bytes) -> None:
        """Send one CopyData message (a standby status update)."""
        ...


class RecordProducer(Protocol):
    """The Kafka side of a session: batched records for the topic, single records for
    others (the dead-letter topic), transactions; delivery reports go to the
    :data:`AcksCallback` it was built with."""

    transactional_id: str | None

    @property
    def partitions(self) -> int:
        """The topic's partition count (once started)."""
        ...

    @property
    def uncommitted(self) -> bool:
        """Something was handed over since the last commit."""
        ...

    @property
    def direct_add(self) -> Add:
        """Queue one record for the topic (never waits); once started."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def commit(self) -> None: ...

    async def abort(self) -> None: ...

    async def flush(self) -> None: ...

    def release(self) -> None:
        """Hand over the batches held back (the reader caught up)."""
        ...

    async def send(
        self, position: Position, key: bytes, value: bytes, headers: Headers, topic: str
    ) -> None:
        """Queue one record for ``topic``; its report goes to the callback."""
        ...

    async def send_and_wait(self, topic: str, key: bytes, value: bytes, headers: Headers) -> None:
        """Send one record and wait for Kafka's answer; raises its error."""
        ...


ProducerFactory = Callable[[AcksCallback], RecordProducer]
