"""Run a batch of records stream by stream: different streams at once, one stream in order.

Order matters only within a stream (DESIGN.md invariant 4: every event of one bootstrap
carries the organization's stream_id, which is the Kafka key), so the records of a batch
are grouped by key, each group is handled in the batch's order, and the groups run
concurrently. A record without a key belongs to no stream and is a group of its own.
The call returns only when every record of the batch has been handled, so the caller
(an agent acking a batch after its loop body returns) never acks a record whose effects
have not happened.

Failures are handled as Faust's one-record-at-a-time loop handles them. There, a handler
that raises crashes the agent; Faust acks the failed record and the restarted agent goes
on with the next one. Here the failed record is likewise not retried, every other record
of the batch is still handled (the records of its own stream too, in order), and then
the first failure in batch order is raised for Faust to log and restart the agent; any
further failures are logged here. (The handlers retry every effect themselves, see
``effects.with_retries``, so a failure that reaches this module is a bug, not an outage.)
Cancellation (shutdown, rebalance) cancels every group and returns once they all stopped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Final, Generic, TypeVar

log = logging.getLogger(__name__)

R = TypeVar("R")

DEFAULT_MAX_IN_FLIGHT: Final = 64

Indexed = tuple[int, R]


def group_by_key(items: Sequence[R], key: Callable[[R], Hashable | None]) -> list[list[Indexed[R]]]:
    """items grouped by key, each with its index in items.

    Each group keeps the items' order; groups come in the order of their first item.
    An item whose key is None forms a group of its own.
    """
    groups: list[list[Indexed[R]]] = []
    by_key: dict[Hashable, list[Indexed[R]]] = {}
    for index, item in enumerate(items):
        k = key(item)
        if k is None:
            groups.append([(index, item)])
            continue
        group = by_key.get(k)
        if group is None:
            group = by_key[k] = []
            groups.append(group)
        group.append((index, item))
    return groups


class StreamDispatcher(Generic[R]):
    """Hands each record of a batch to ``handle``: streams concurrently, each in order.

    At most ``max_in_flight`` handlers run at once, across all the batches of this
    dispatcher, so a batch of many streams does not open as many requests at once
    against PostgreSQL and Temporal.
    """

    def __init__(
        self,
        name: str,
        handle: Callable[[R], Awaitable[None]],
        key: Callable[[R], Hashable | None],
        *,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        self.name = name
        self.max_in_flight = max_in_flight
        self._handle = handle
        self._key = key
        self._slots = asyncio.Semaphore(max_in_flight)

    async def __call__(self, batch: Sequence[R]) -> None:
        """Handle every record of batch; raise the first failure once all are done."""
        groups = group_by_key(batch, self._key)
        began = time.monotonic()
        async with asyncio.TaskGroup() as tasks:
            running = [tasks.create_task(self._run_group(group)) for group in groups]
        log.debug(
            "%s: %d records of %d streams handled in %.3fs",
            self.name,
            len(batch),
            len(groups),
            time.monotonic() - began,
        )
        failures = sorted(
            (failure for task in running for failure in task.result()), key=lambda f: f[0]
        )
        if not failures:
            return
        for index, exc in failures[1:]:
            log.error(
                "%s: the handler of record %d of %d failed too",
                self.name,
                index,
                len(batch),
                exc_info=exc,
            )
        raise failures[0][1]

    async def _run_group(self, group: list[Indexed[R]]) -> list[tuple[int, Exception]]:
        failures: list[tuple[int, Exception]] = []
        for index, item in group:
            async with self._slots:
                try:
                    await self._handle(item)
                except Exception as exc:  # reported by __call__, see the module docstring
                    failures.append((index, exc))
        return failures
