"""Non-blocking I/O on a replication connection through psycopg's public ``pq`` API.

psycopg 3 has no replication API, but a connection opened with ``replication=database``
accepts replication commands in the simple-query protocol and, after
``START_REPLICATION``, enters COPY_BOTH. Here the waiting is done on the event loop
(``add_reader``/``add_writer`` on the socket), in the spirit of psycopg's own split
between protocol generators and ``waiting.py``; no private psycopg module is imported.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import psycopg
from psycopg import pq

from replication.errors import ServerError, StreamClosed


async def _wait(fd: int, *, write: bool = False, timeout: float | None = None) -> bool:  # noqa: ASYNC109
    """Wait until fd is readable (or writable); False on timeout."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not fut.done():
            fut.set_result(None)

    if write:
        loop.add_writer(fd, ready)
    else:
        loop.add_reader(fd, ready)
    try:
        await asyncio.wait_for(fut, timeout)
        return True
    except TimeoutError:
        return False
    finally:
        if write:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


def _error(pgconn: pq.abc.PGconn, result: pq.abc.PGresult | None = None) -> ServerError:
    if result is not None:
        message = (result.error_message or b"").decode(errors="replace").strip()
        state = result.error_field(pq.DiagnosticField.SQLSTATE)
        return ServerError(message or "server error", state.decode() if state else None)
    message = (pgconn.error_message or b"").decode(errors="replace").strip()
    return ServerError(message or "connection error", None)


class ReplicationWire:
    """Simple queries and the COPY_BOTH stream of one replication connection."""

    def __init__(
        self, conn: psycopg.AsyncConnection[object], *, on_idle: Callable[[], None] | None = None
    ) -> None:
        """``on_idle`` is called whenever :meth:`read_batch` has read everything the server
        sent so far and is about to wait for more."""
        self.conn = conn
        self.pgconn = conn.pgconn
        self.pgconn.nonblocking = 1
        self.on_idle = on_idle
        self._pending_error: StreamClosed | None = None

    @property
    def server_version(self) -> int:
        """The server's version number (e.g. 150004)."""
        return self.conn.info.server_version

    async def _flush(self) -> None:
        while self.pgconn.flush() == 1:
            await _wait(self.pgconn.socket, write=True)

    async def query(self, sql: str) -> list[list[str | None]]:
        """Run a replication command (simple protocol); returns the rows as text."""
        pgconn = self.pgconn
        pgconn.send_query(sql.encode())
        await self._flush()
        rows: list[list[str | None]] = []
        error: ServerError | None = None
        while True:
            while pgconn.is_busy():
                await _wait(pgconn.socket)
                pgconn.consume_input()
            result = pgconn.get_result()
            if result is None:
                break
            if result.status == pq.ExecStatus.FATAL_ERROR:
                error = _error(pgconn, result)
            elif result.status == pq.ExecStatus.COPY_BOTH:
                return rows
            elif result.status == pq.ExecStatus.TUPLES_OK:
                for r in range(result.ntuples):
                    rows.append(
                        [
                            None if (v := result.get_value(r, c)) is None else bytes(v).decode()
                            for c in range(result.nfields)
                        ]
                    )
        if error is not None:
            raise error
        return rows

    async def start_copy(self, sql: str) -> None:
        """Send START_REPLICATION and wait until the server enters COPY_BOTH."""
        pgconn = self.pgconn
        pgconn.send_query(sql.encode())
        await self._flush()
        while pgconn.is_busy():
            await _wait(pgconn.socket)
            pgconn.consume_input()
        result = pgconn.get_result()
        if result is None or result.status != pq.ExecStatus.COPY_BOTH:
            raise _error(pgconn, result)

    async def read_batch(self, timeout: float, limit: int = 512) -> list[bytes]:  # noqa: ASYNC109
        """The CopyData payloads already received, up to ``limit``; waits up to ``timeout``
        for the first one (empty list: nothing arrived).

        One call per socket read instead of one per frame: a backlog arrives many frames
        per read. An end of stream or error after some frames is raised on the next call,
        so the frames before it are handled first. Before waiting, the socket is read once
        more (it may hold the next frames already); only if that finds nothing is the
        reader idle: ``on_idle`` is called, then the wait begins.
        """
        if self._pending_error is not None:
            error, self._pending_error = self._pending_error, None
            raise error
        pgconn = self.pgconn
        get = pgconn.get_copy_data
        frames: list[bytes] = []
        polled = False
        while len(frames) < limit:
            nbytes, data = get(1)
            if nbytes > 0:
                frames.append(bytes(data))
                continue
            if nbytes == 0:
                if frames:
                    break
                if not polled:
                    polled = True
                    # Let the other tasks run (Kafka's acks, batch hand-overs): reading
                    # from the socket directly would otherwise never yield under load.
                    await asyncio.sleep(0)
                    pgconn.consume_input()
                    continue
                polled = False
                if self.on_idle is not None:
                    self.on_idle()
                if not await _wait(pgconn.socket, timeout=timeout):
                    break
                pgconn.consume_input()
                continue
            if nbytes == -1:
                result = pgconn.get_result()
                if result is not None and result.status == pq.ExecStatus.FATAL_ERROR:
                    error = StreamClosed(str(_error(pgconn, result)))
                else:
                    error = StreamClosed("the server ended the replication stream")
            else:
                error = StreamClosed(str(_error(pgconn)))
            if not frames:
                raise error
            self._pending_error = error
            break
        return frames

    async def write(self, payload: bytes) -> None:
        """Send one CopyData message (e.g. a standby status update)."""
        while self.pgconn.put_copy_data(payload) == 0:
            await _wait(self.pgconn.socket, write=True)
        await self._flush()
