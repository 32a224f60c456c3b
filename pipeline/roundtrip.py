"""Statements as one transaction, in one round trip to PostgreSQL.

psycopg's ``conn.transaction()`` inside pipeline mode waits for the server four times:
after ``BEGIN``, before ``COMMIT``, after it, and at the pipeline's end (libpq's trace
in ``tests/integration/test_worker_store.py`` shows it). Without it, PostgreSQL runs
every statement between two ``Sync`` messages as one *implicit* transaction: committed
at the ``Sync`` if every statement succeeded, rolled back if one failed, and the
statements after the failed one skipped (the extended query protocol's pipelining; see
libpq's "Pipeline Mode"). So on an autocommit connection, statements sent in one
pipeline with no ``BEGIN`` are one transaction, and the client waits once.

Within it, ``SET LOCAL`` warns that it is outside a transaction block; use
``set_config(name, value, true)``, which lasts until the implicit transaction ends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeAlias

import psycopg
from psycopg.rows import TupleRow

Params: TypeAlias = Sequence[object] | Mapping[str, object]
Row: TypeAlias = tuple[object, ...]


async def one_transaction(
    conn: psycopg.AsyncConnection[TupleRow], statements: Sequence[tuple[str, Params]]
) -> list[Row | None]:
    """Run statements as one transaction in one round trip; each one's first row.

    A failed statement raises its error (psycopg's, as outside pipeline mode) and undoes
    the others; the connection is then idle, ready for the next transaction.
    """
    if not conn.autocommit:
        # psycopg would open its own transaction around the pipeline's statements.
        raise ValueError("one_transaction needs an autocommit connection")
    async with conn.pipeline():
        cursors = [await conn.execute(query, params) for query, params in statements]
    return [await cur.fetchone() for cur in cursors]
