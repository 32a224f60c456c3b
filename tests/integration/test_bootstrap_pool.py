"""The worker's connection pool (pipeline/bootstrap/pool.py) against the real PostgreSQL:
connections are reused, a failed or unfinished one is not, and after the server dropped
the connections a borrow gets a fresh one. Backend pids tell connections apart."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from pipeline.bootstrap.pool import ConnectionPool

pytestmark = pytest.mark.integration


async def _pid(pool: ConnectionPool) -> int:
    async with pool.connection() as conn:
        return conn.info.backend_pid


async def test_reuse_failure_and_a_dropped_server_connection(fresh_db: str) -> None:
    pool = ConnectionPool(fresh_db)
    try:
        first = await _pid(pool)
        assert await _pid(pool) == first and pool.idle == 1

        # A block that failed closes its connection instead of giving it back.
        with pytest.raises(psycopg.errors.UndefinedTable):
            async with pool.connection() as conn:
                await conn.execute("SELECT * FROM no_such_table")
        assert pool.idle == 0
        second = await _pid(pool)
        assert second != first

        # A connection left inside a transaction is not given back.
        async with pool.connection() as conn:
            await conn.execute("BEGIN")
        assert pool.idle == 0

        # The server drops the idle connections (a restart, a pooler's idle timeout): the
        # next borrow fails once with OperationalError, which empties the pool, and the one
        # after it gets a fresh connection.
        held = [await _pid(pool)]
        assert pool.idle == 1
        with psycopg.connect(fresh_db, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (held[0],))
        with pytest.raises(psycopg.OperationalError):
            async with pool.connection() as conn:
                await conn.execute("SELECT 1")
        assert pool.idle == 0
        assert await _pid(pool) not in held
    finally:
        await pool.close()
    assert pool.idle == 0


async def test_at_most_max_size_connections_are_open(fresh_db: str) -> None:
    pool = ConnectionPool(fresh_db, max_size=2)
    release = asyncio.Event()
    holding = 0
    most = 0

    async def hold() -> None:
        nonlocal holding, most
        async with pool.connection():
            holding += 1
            most = max(most, holding)
            await release.wait()
            holding -= 1

    try:
        tasks = [asyncio.create_task(hold()) for _ in range(5)]
        async with asyncio.timeout(30):
            while holding < 2:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # the other three wait for a slot
        assert holding == 2
        release.set()
        async with asyncio.timeout(30):
            await asyncio.gather(*tasks)
        assert most == 2 and pool.idle == 2
    finally:
        await pool.close()
