"""A stand-in bootstrap workflow of an earlier version: it records its outcome
(``workflow.queue.completed``, as the real one does) but not its start, as the workflow
did before it recorded ``workflow_started`` itself."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import psycopg
from temporalio import activity, workflow

from pipeline import events as ev
from pipeline.eventstore import NewEvent, emit, idempotency_key


class CompleteActivity:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn

    @activity.defn(name="standin.complete")
    async def complete(self, payload: dict[str, Any]) -> None:
        info = activity.info()
        workflow_id = info.workflow_id
        event = NewEvent(
            stream_id=uuid.UUID(str(payload["org_id"])),
            stream_type=ev.STREAM_TYPE_ORGANIZATION,
            event_type=ev.QUEUE_COMPLETED,
            event_data={"job_id": str(payload["job_id"]), "workflow_id": workflow_id},
            idempotency_key=idempotency_key(workflow_id, ev.QUEUE_COMPLETED),
            event_metadata={
                "source": "org-bootstrap-worker",
                "workflow_id": workflow_id,
                "run_id": info.workflow_run_id,
            },
        )
        async with await psycopg.AsyncConnection.connect(self._dsn, autocommit=True) as conn:
            await emit(conn, event)


@workflow.defn(name="OrganizationBootstrapWorkflow")
class FinishingStandInWorkflow:
    @workflow.run
    async def run(self, payload: dict[str, Any]) -> None:
        await workflow.execute_activity(
            "standin.complete", payload, start_to_close_timeout=timedelta(seconds=30)
        )
