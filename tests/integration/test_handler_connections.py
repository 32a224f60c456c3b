"""The handlers' connections (pipeline.agents.effects.Database.borrow) on a real PostgreSQL:
concurrent borrowers get their own sessions, at most ``size`` of them, and a connection
a block left unusable is never lent again."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from pipeline.agents.effects import Database

pytestmark = pytest.mark.integration


async def _pid(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> int:
    cur = await conn.execute("SELECT pg_backend_pid()")
    row = await cur.fetchone()
    assert row is not None
    return int(str(row[0]))


async def test_concurrent_borrowers_get_their_own_sessions_at_most_size(fresh_db: str) -> None:
    db = Database(fresh_db, "t", size=2)
    inside = asyncio.Event()
    release = asyncio.Event()
    pids: list[int] = []
    order: list[str] = []

    async def hold(name: str) -> None:
        async with db.borrow() as conn:
            order.append(name)
            pids.append(await _pid(conn))
            if len(pids) == 2:
                inside.set()
            await release.wait()

    first = [asyncio.create_task(hold(n)) for n in ("a", "b")]
    await inside.wait()
    third = asyncio.create_task(hold("c"))
    for _ in range(20):
        await asyncio.sleep(0)
    # a and b connect concurrently: either may get its connection first.
    assert sorted(order) == ["a", "b"], "a third borrower got a connection past size=2"
    assert len(set(pids)) == 2, "two concurrent borrowers shared a session"
    release.set()
    await asyncio.gather(*first, third)
    assert order[-1] == "c" and pids[-1] in pids[:2], "a returned connection was not reused"
    await db.close()


async def test_a_connection_left_in_a_transaction_or_broken_is_not_lent_again(
    fresh_db: str,
) -> None:
    db = Database(fresh_db, "t", size=2)
    async with db.borrow() as conn:
        await conn.execute("BEGIN")  # left open by the block
        left_open = await _pid(conn)
    async with db.borrow() as conn:
        fresh = await _pid(conn)
    assert fresh != left_open
    async with await psycopg.AsyncConnection.connect(fresh_db, autocommit=True) as admin:
        await admin.execute("SELECT pg_terminate_backend(%s)", (fresh,))
    with pytest.raises(psycopg.OperationalError):
        async with db.borrow() as conn:  # the idle one, killed server-side meanwhile
            await conn.execute("SELECT 1")
    async with db.borrow() as conn:
        assert await _pid(conn) not in (left_open, fresh)
    await db.close()


async def test_size_one_lends_the_roles_shared_connection(fresh_db: str) -> None:
    db = Database(fresh_db, "t")
    shared = await db.connection()
    async with db.borrow() as conn:
        assert conn is shared
    await db.close()


async def test_close_never_closes_a_connection_under_a_statement_in_flight(fresh_db: str) -> None:
    """close() while a borrower's statement and a shared-connection statement run: both
    end normally (psycopg fails a statement whose connection closed under it, or waits
    forever; a stopped ``pipeline run`` crashed at exit with it), and both connections
    are closed once their statements ended."""
    for size in (1, 2):  # 1: borrow() lends the shared connection
        db = Database(fresh_db, "t", size=size)
        running = asyncio.Event()
        used: list[psycopg.AsyncConnection[tuple[object, ...]]] = []
        borrower = asyncio.create_task(_slow_statement(db, running, used))
        await running.wait()
        await asyncio.sleep(0.1)  # the statement is on the wire
        await db.close()
        assert await borrower == 42, f"size={size}: the statement in flight did not end well"
        assert used[0].closed, f"size={size}: the connection lent across close() stayed open"


async def _slow_statement(
    db: Database,
    running: asyncio.Event,
    used: list[psycopg.AsyncConnection[tuple[object, ...]]],
) -> object:
    async with db.borrow() as conn:
        used.append(conn)
        running.set()
        cur = await conn.execute("SELECT pg_sleep(0.5), 42")
        row = await cur.fetchone()
        assert row is not None
        return row[1]
