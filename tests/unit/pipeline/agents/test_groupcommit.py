"""GroupCommit's scheduling without a database: one group in flight at a time, the
statements that arrive meanwhile go as the next group, and close() cancels the waiting
ones while the one in flight finishes. (The SQL side: tests/integration/test_group_commit.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import pytest

from pipeline.agents.effects import Database
from pipeline.agents.groupcommit import GroupCommit


class _Cursor:
    def __init__(self, row: tuple[object, ...]) -> None:
        self._row = row

    async def fetchone(self) -> tuple[object, ...]:
        return self._row


class _Conn:
    """Records what is sent: a list per round trip; the first statement ever sent waits
    for ``release``."""

    autocommit = True

    def __init__(self, db: _FakeDb) -> None:
        self._db = db
        self._in_pipeline = False

    async def execute(self, query: str, params: object = None) -> _Cursor:
        if "set_config('lock_timeout'" in query:
            return _Cursor(())
        if self._in_pipeline:
            self._db.sent[-1].append(query)
        else:
            self._db.sent.append([query])
        if len(self._db.sent) == 1:
            await self._db.release.wait()
        return _Cursor((query,))

    @asynccontextmanager
    async def pipeline(self) -> AsyncIterator[None]:
        self._db.sent.append([])
        self._in_pipeline = True
        try:
            yield
        finally:
            self._in_pipeline = False


class _FakeDb:
    name = "fake"

    def __init__(self) -> None:
        self.sent: list[list[str]] = []
        self.release = asyncio.Event()

    @asynccontextmanager
    async def borrow(self) -> AsyncIterator[Any]:
        yield _Conn(self)


def _group(db: _FakeDb) -> GroupCommit:
    return GroupCommit(cast(Database, db))


async def _one_in_flight() -> tuple[_FakeDb, GroupCommit, asyncio.Future[object]]:
    """A group commit whose first statement ("q0") is in flight until db.release."""
    db = _FakeDb()
    group = _group(db)
    first: asyncio.Future[object] = asyncio.ensure_future(group.fetchone("q0", (), stream="s"))
    await asyncio.sleep(0.01)
    return db, group, first


async def test_statements_given_while_one_is_in_flight_go_as_one_group() -> None:
    db, group, first = await _one_in_flight()
    rest = [asyncio.ensure_future(group.fetchone(f"q{i}", (), stream=f"s{i}")) for i in (1, 2, 3)]
    await asyncio.sleep(0.01)
    assert db.sent == [["q0"]]  # the others wait for the one in flight
    db.release.set()
    assert await first == ("q0",)
    assert [await r for r in rest] == [("q1",), ("q2",), ("q3",)]
    assert db.sent == [["q0"], ["q1", "q2", "q3"]]
    await group.close()


async def test_close_cancels_the_waiting_and_lets_the_one_in_flight_finish() -> None:
    db, group, first = await _one_in_flight()
    waiting = asyncio.ensure_future(group.fetchone("q1", (), stream="s"))
    await asyncio.sleep(0)
    closing = asyncio.ensure_future(group.close())
    await asyncio.sleep(0.01)
    db.release.set()
    await closing
    assert await first == ("q0",)
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert db.sent == [["q0"]]


async def test_a_caller_cancelled_while_waiting_is_not_sent() -> None:
    db, group, first = await _one_in_flight()
    gone = asyncio.ensure_future(group.fetchone("q1", (), stream="s"))
    kept = asyncio.ensure_future(group.fetchone("q2", (), stream="s"))
    await asyncio.sleep(0)
    gone.cancel()
    db.release.set()
    await first
    assert await kept == ("q2",)
    assert db.sent == [["q0"], ["q2"]]  # q2 alone, q1 never sent
    await group.close()
