"""A small pool of event-store connections for the worker's activities.

Opening a connection (TCP, startup, authentication) costs more than the one or two
statements an activity runs on it, so the activities borrow connections from here and
give them back. Connections are autocommit (every write the activities make is an
explicit ``conn.transaction()``) and never use server-side prepared statements, so a
transaction-mode pooler in front of the database breaks nothing.

A connection goes back to the pool only when the block using it ended without an error
and it is idle; any failure closes it. A connection-level failure (``OperationalError``)
also closes every idle one: after a database restart they are all stale, and the
activity's retry should get a fresh connection, not the next stale one. Idle
connections older than ``max_idle_s`` are closed rather than reused. At most ``max_size``
connections are open at once (a borrower waits for one to come back), so a burst of
activities cannot exhaust the server's ``max_connections``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import TupleRow

Connection = psycopg.AsyncConnection[TupleRow]


class ConnectionPool:
    """Up to ``max_size`` connections to ``dsn``, opened on demand and kept while idle."""

    def __init__(self, dsn: str, *, max_size: int = 10, max_idle_s: float = 60.0) -> None:
        self._dsn = dsn
        self._max_idle_s = max_idle_s
        self._idle: list[tuple[float, Connection]] = []
        self._slots = asyncio.Semaphore(max_size)

    @property
    def idle(self) -> int:
        """How many connections wait in the pool now."""
        return len(self._idle)

    async def _take(self) -> Connection:
        now = time.monotonic()
        while self._idle:
            since, conn = self._idle.pop()
            if not conn.closed and now - since <= self._max_idle_s:
                return conn
            await conn.close()
        conn = await psycopg.AsyncConnection.connect(self._dsn, autocommit=True)
        conn.prepare_threshold = None
        return conn

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """A connection for the block; back to the pool if the block ended cleanly."""
        async with self._slots:
            conn = await self._take()
            try:
                yield conn
            except psycopg.OperationalError:
                await conn.close()
                await self.close()
                raise
            except BaseException:
                await conn.close()
                raise
            if not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE:
                self._idle.append((time.monotonic(), conn))
            else:
                await conn.close()

    async def close(self) -> None:
        """Close every idle connection (borrowed ones close when given back)."""
        idle, self._idle = self._idle, []
        for _, conn in idle:
            await conn.close()
