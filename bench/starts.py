"""Temporal side of the benchmark: the same start call as the pipeline, and start times.

``start_bootstrap`` uses exactly the options of
``pipeline.agents.effects.WorkflowStartClient`` (deterministic id, REJECT_DUPLICATE +
USE_EXISTING), so every path starts the same thing.
Start times are the server's: each execution's ``start_time`` from the visibility store.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError

from pipeline.events import WORKFLOW_TYPE_BOOTSTRAP, workflow_id_for


def bootstrap_input(org_id: str, job_id: str, data: Mapping[str, object]) -> dict[str, object]:
    """The workflow input the enqueue agent builds from an initiated event."""
    return {
        "org_id": org_id,
        "name": data.get("name"),
        "subdomain": data.get("subdomain"),
        "admins": data.get("admins"),
        "job_id": job_id,
    }


async def start_bootstrap(
    client: Client, task_queue: str, org_id: str, workflow_input: dict[str, object]
) -> str:
    """Start ``org-bootstrap-{org_id}``; returns the run id."""
    handle = await client.start_workflow(
        WORKFLOW_TYPE_BOOTSTRAP,
        workflow_input,
        id=workflow_id_for(org_id),
        task_queue=task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    return handle.result_run_id or ""


async def start_times(
    client: Client, task_queue: str, expected: int, wait_s: float = 60.0
) -> dict[str, float]:
    """workflow id -> start time (POSIX s) of every execution on ``task_queue``.

    Visibility is eventually consistent: list until ``expected`` are seen or ``wait_s`` passed.
    """
    deadline = time.monotonic() + wait_s
    found: dict[str, float] = {}
    while True:
        listed: dict[str, float] = {}
        try:
            async for execution in client.list_workflows(f"TaskQueue = '{task_queue}'"):
                listed[execution.id] = execution.start_time.timestamp()
        except RPCError:
            # A busy dev server times out visibility queries: keep the best listing so far.
            listed = {}
        if len(listed) > len(found):
            found = listed
        if len(found) >= expected or time.monotonic() > deadline:
            return found
        await asyncio.sleep(1.0)


async def server_version(client: Client) -> str:
    info = await client.workflow_service.get_system_info(GetSystemInfoRequest())
    return str(info.server_version)


async def describe_missing(
    client: Client, workflow_ids: list[str], found: Mapping[str, float]
) -> dict[str, float]:
    """Start times of the ``workflow_ids`` a visibility listing did not return, asked one
    by one (``DescribeWorkflowExecution`` reads the execution itself, not the eventually
    consistent visibility store, whose queries a busy dev server times out). A workflow
    that does not exist is left out: it was really not started."""
    out: dict[str, float] = {}
    for wid in workflow_ids:
        if wid in found:
            continue
        try:
            description = await client.get_workflow_handle(wid).describe()
        except RPCError:
            continue
        out[wid] = description.start_time.timestamp()
    return out
