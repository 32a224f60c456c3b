"""A stand-in for ``pipeline worker``: the workflow type, registered under the same name,
that returns at once (no activities, so no events written back).

    python -m bench.standin      # polls PIPELINE_TEMPORAL_TASK_QUEUE until SIGTERM

The benchmark measures how fast a workflow is *started*; the real workflow's activities
(DNS, e-mail, projection events) would add several event-store writes per bootstrap and
compete for the same two CPUs, without changing what is measured. ``bench.run --real-worker``
runs ``pipeline worker`` instead.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker

from pipeline import eventloop
from pipeline.events import WORKFLOW_TYPE_BOOTSTRAP


@workflow.defn(name=WORKFLOW_TYPE_BOOTSTRAP)
class StandInBootstrapWorkflow:
    """Accepts the bootstrap input and completes."""

    @workflow.run
    async def run(self, request: dict[str, Any]) -> str:
        # dict[str, Any], not dict[str, object]: temporalio cannot decode a payload into
        # ``object`` ("Unserializable type"), so the workflow task failed and was retried.
        return str(request.get("org_id", ""))


async def main() -> None:
    client = await Client.connect(
        os.environ["PIPELINE_TEMPORAL_ADDRESS"],
        namespace=os.environ.get("PIPELINE_TEMPORAL_NAMESPACE", "default"),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    worker = Worker(
        client,
        task_queue=os.environ["PIPELINE_TEMPORAL_TASK_QUEUE"],
        workflows=[StandInBootstrapWorkflow],
        max_concurrent_workflow_task_polls=8,
    )
    async with worker:
        await stop.wait()


if __name__ == "__main__":
    eventloop.run(main())
