"""The listener: the session's side of the replication connection. It starts the stream,
hands over the frames the server sent, and sends the standby status updates the
checkpointer decides. No decoding here (:mod:`replication.processor`), no bookkeeping
(:mod:`replication.checkpointer`).
"""

from __future__ import annotations

import re
from typing import Final

from replication.decoder import encode_standby_status
from replication.errors import ServerError, SlotInUse
from replication.lsn import LSN
from replication.ports import ReplicationStream

_ACTIVE_PID: Final = re.compile(r"active for PID (\d+)", re.I)
_OBJECT_IN_USE: Final = "55006"


class Listener:
    """The COPY_BOTH stream of one slot on a :class:`~replication.ports.ReplicationStream`."""

    __slots__ = ("slot", "wire")

    def __init__(self, wire: ReplicationStream, slot: str) -> None:
        self.wire = wire
        self.slot = slot

    async def start(self, command: str) -> None:
        """Send START_REPLICATION; :class:`~replication.errors.SlotInUse` when another
        walsender streams the slot."""
        try:
            await self.wire.start_copy(command)
        except ServerError as exc:
            if exc.sqlstate == _OBJECT_IN_USE:
                match = _ACTIVE_PID.search(str(exc))
                raise SlotInUse(self.slot, int(match[1]) if match else None) from exc
            raise

    async def frames(self, timeout: float) -> list[bytes]:  # noqa: ASYNC109
        """The frames received so far, waiting up to ``timeout`` for the first."""
        return await self.wire.read_batch(timeout=timeout)

    async def send_status(self, write: LSN, flush: LSN) -> None:
        """A standby status update: received up to ``write``, durable up to ``flush``."""
        await self.wire.write(encode_standby_status(write, flush, flush))
