"""``pipeline.roundtrip.one_transaction`` on a real PostgreSQL: the statements of one
pipeline are one transaction (one ``xmin``; a failure undoes the earlier ones and skips
the later ones), the connection is idle afterwards either way, and ``SET LOCAL``'s
stand-in, ``set_config(..., true)``, ends with the transaction."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.pq import TransactionStatus

from pipeline.roundtrip import one_transaction

pytestmark = pytest.mark.integration

CREATE = "CREATE TABLE t (n int PRIMARY KEY)"
INSERT = "INSERT INTO t VALUES (%s) RETURNING n, xmin::text"


async def test_one_transaction_commits_together_or_not_at_all(fresh_db: str) -> None:
    async with await psycopg.AsyncConnection.connect(fresh_db, autocommit=True) as conn:
        await conn.execute(CREATE)
        rows = await one_transaction(
            conn,
            [
                ("SELECT set_config('lock_timeout', '150ms', true)", ()),
                (INSERT, (1,)),
                (INSERT, (2,)),
                ("SELECT current_setting('lock_timeout')", ()),
            ],
        )
        assert rows[0] == ("150ms",) and rows[3] == ("150ms",)
        assert rows[1] is not None and rows[2] is not None
        assert rows[1][1] == rows[2][1]  # one transaction
        assert conn.info.transaction_status == TransactionStatus.IDLE
        assert await (await conn.execute("SHOW lock_timeout")).fetchone() == ("0",)

        # 3 is new, 1 is a duplicate key, 4 comes after it: none of them lands.
        with pytest.raises(psycopg.errors.UniqueViolation):
            await one_transaction(conn, [(INSERT, (3,)), (INSERT, (1,)), (INSERT, (4,))])
        assert conn.info.transaction_status == TransactionStatus.IDLE
        table = await (await conn.execute("SELECT n FROM t ORDER BY n")).fetchall()
        assert table == [(1,), (2,)]
        assert await one_transaction(conn, [("SELECT 5", ())]) == [(5,)]


async def test_one_transaction_refuses_a_connection_in_transaction_mode(fresh_db: str) -> None:
    async with await psycopg.AsyncConnection.connect(fresh_db) as conn:
        with pytest.raises(ValueError, match="autocommit"):
            await one_transaction(conn, [("SELECT 1", ())])
