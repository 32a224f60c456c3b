"""Every bootstrap activity heartbeats while it runs, so a dead worker's are retried soon.

A worker that dies (SIGKILL, a lost node) cannot tell Temporal that its activities will
never finish: without heartbeats the server notices only when the start-to-close timeout
(30 s) runs out, and each bootstrap the dead worker was in waited that long (the chaos
harness measured 15-76 s from a worker kill to the next completed bootstrap). The
workflow gives every activity a heartbeat timeout of :data:`HEARTBEAT_TIMEOUT`; the
interceptor here records a heartbeat every :data:`HEARTBEAT_EVERY` seconds for as long
as the activity runs, so only an attempt whose worker stopped heartbeating (dead, or
its event loop stalled that long) times out and is retried on another worker. The
activities are idempotent (each event is keyed ``{workflow_id}:{event_type}``, a
provider call is keyed too), so a retried attempt adds nothing.

Temporal's SDK sends at most one heartbeat per 0.8 x the heartbeat timeout (it keeps
the latest and sends it when that interval ends), so the frequent local calls cost no
extra requests.

Local activities (the workflow's short event-store writes) do not heartbeat: they run
inside a workflow task, and a lost worker's task is retried from the history.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any, Final

from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

HEARTBEAT_TIMEOUT: Final = timedelta(seconds=5)
HEARTBEAT_EVERY: Final = 1.0


async def _beat() -> None:
    # The first beat after HEARTBEAT_EVERY, not at once: an activity that is done by then
    # (most are, on a machine with CPU to spare) costs the server no heartbeat at all.
    while True:
        await asyncio.sleep(HEARTBEAT_EVERY)
        activity.heartbeat()


class _Heartbeating(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        if activity.info().is_local:
            # A local activity runs inside its workflow task and cannot heartbeat; a lost
            # worker's task is retried from the history, and the activity with it.
            return await super().execute_activity(input)
        beating = asyncio.create_task(_beat())  # copies the activity's context
        try:
            return await super().execute_activity(input)
        finally:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating


class HeartbeatInterceptor(Interceptor):
    """Worker interceptor: each activity heartbeats every :data:`HEARTBEAT_EVERY` s."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Heartbeating(next)
