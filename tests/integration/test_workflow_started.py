"""``organization.bootstrap.workflow_started``: once per started workflow, before the
workflow's own events (DESIGN.md invariant 9).

`pipeline run` dies by SIGKILL right after the Temporal start returned and before it
recorded the start (kill point ``starter.after_start``); the real bootstrap worker runs
in the test process. Then:

- the workflow finishes before the pipeline comes back: the restarted pipeline finds the
  job completed, and the store still holds exactly one ``workflow_started`` with the run
  id Temporal reports, and the queue row carries that run id and a start time;
- the workflow is still running (its email step keeps failing against an SMTP port nobody
  listens on) when the pipeline comes back: ``workflow_started`` precedes every event of
  the workflow's own activities.

Everything is checked from the outside: SQL over ``domain_events`` and the queue
projection, Temporal's own client API.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import psycopg
import pytest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from pipeline import events as ev
from pipeline.bootstrap.settings import from_env
from pipeline.bootstrap.worker import build_worker
from tests.integration.finishing_standin import CompleteActivity, FinishingStandInWorkflow
from tests.integration.pipeline_process import (
    RunningPipeline,
    event_types,
    eventually,
    pipeline_env,
    slot_active,
    start_pipeline,
    stop_pipeline,
    wait_exit,
)

# One check for "the group committed every record", the one that knows about the
# reader's transaction markers.
from tests.integration.test_pipeline_crash import (
    FAST_GROUP_ENV,
    consumed_everything,
    emit_bootstraps,
)

pytestmark = pytest.mark.integration

HANG = 180.0  # bounds a hang only, nothing here is about speed


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _queue_row(dsn: str, org: uuid.UUID) -> tuple[object, ...] | None:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT status, run_id, started_at IS NOT NULL FROM workflow_queue_projection "
            "WHERE stream_id = %s",
            (org,),
        ).fetchone()


def _started_events(dsn: str, org: uuid.UUID) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT event_data->>'run_id', event_data->>'job_id' FROM domain_events "
            "WHERE stream_id = %s AND event_type = %s",
            (org, ev.BOOTSTRAP_WORKFLOW_STARTED),
        ).fetchall()


@asynccontextmanager
async def _killed_after_start(
    dsn: str,
    kafka: str,
    client: Client,
    tmp: Path,
    worker_env: dict[str, str],
    make_worker: Callable[[dict[str, str]], Worker] | None = None,
) -> AsyncIterator[tuple[dict[str, str], uuid.UUID]]:
    """One bootstrap whose pipeline died between the Temporal start and the record of it;
    the real worker (with worker_env's settings), or make_worker's, runs for the block's
    duration."""
    env = {
        **pipeline_env(dsn, kafka, client.service_client.config.target_host, tmp),
        **FAST_GROUP_ENV,
    }
    org = uuid.uuid4()
    if make_worker is None:
        worker = build_worker(client, from_env({**env, **worker_env}))
    else:
        worker = make_worker(env)
    async with worker:
        doomed = start_pipeline({**env, "PIPELINE_KILL_AT": "starter.after_start:1"}, tmp, "doomed")
        try:
            await eventually(
                lambda: slot_active(dsn, doomed.settings.slot_name), "a reader", doomed
            )
            emit_bootstraps(dsn, [org])
            code = await wait_exit(doomed, "the kill point starter.after_start", HANG)
        finally:
            stop_pipeline(doomed, signal.SIGKILL)
        assert code == -signal.SIGKILL, f"exit {code}:\n{doomed.log_tail()}"
        yield env, org


async def _settled(running: RunningPipeline, dsn: str, org: uuid.UUID, status: str) -> None:
    async def done() -> bool:
        row = _queue_row(dsn, org)
        return row is not None and row[0] == status and await consumed_everything(running)

    await eventually(done, f"the job {status} and every record consumed", running, HANG)


async def test_workflow_started_is_recorded_when_the_workflow_finished_before_the_restart(
    fresh_db: str, kafka_bootstrap: str, temporal_client: Client, tmp_path: Path
) -> None:
    async with _killed_after_start(fresh_db, kafka_bootstrap, temporal_client, tmp_path, {}) as (
        env,
        org,
    ):
        handle = temporal_client.get_workflow_handle(ev.workflow_id_for(str(org)))
        await handle.result()  # the workflow completes while the pipeline is down
        described = await handle.describe()
        assert described.status == WorkflowExecutionStatus.COMPLETED

        restarted = start_pipeline(env, tmp_path, "restarted")
        try:
            await _settled(restarted, fresh_db, org, "completed")
            started = _started_events(fresh_db, org)
            assert len(started) == 1, (started, event_types(fresh_db, org))
            assert started[0][0] == described.run_id
            assert _queue_row(fresh_db, org) == ("completed", described.run_id, True)
            types = event_types(fresh_db, org)
            assert types.index(ev.BOOTSTRAP_WORKFLOW_STARTED) < types.index(
                ev.ORGANIZATION_CREATED
            ), types
            runs = [
                w.run_id
                async for w in temporal_client.list_workflows(f"WorkflowId = '{handle.id}'")
            ]
            assert runs == [described.run_id]
        finally:
            stop_pipeline(restarted)


async def test_the_start_of_an_earlier_versions_finished_workflow_is_recorded_once(
    fresh_db: str, kafka_bootstrap: str, temporal_client: Client, tmp_path: Path
) -> None:
    # A workflow that records its outcome but not its start (the workflow before it did):
    # the restarted starter finds the job completed without a start and records it with
    # the run id Temporal describes.
    def standin(env: dict[str, str]) -> Worker:
        return Worker(
            temporal_client,
            task_queue=env["PIPELINE_TEMPORAL_TASK_QUEUE"],
            workflows=[FinishingStandInWorkflow],
            activities=[CompleteActivity(fresh_db).complete],
            workflow_runner=UnsandboxedWorkflowRunner(),
        )

    async with _killed_after_start(
        fresh_db, kafka_bootstrap, temporal_client, tmp_path, {}, standin
    ) as (env, org):
        handle = temporal_client.get_workflow_handle(ev.workflow_id_for(str(org)))
        await handle.result()
        described = await handle.describe()
        assert _started_events(fresh_db, org) == []
        restarted = start_pipeline(env, tmp_path, "restarted")
        try:
            await _settled(restarted, fresh_db, org, "completed")

            async def recorded() -> bool:
                return bool(_started_events(fresh_db, org)) and await consumed_everything(restarted)

            await eventually(recorded, "workflow_started recorded", restarted, HANG)
            await _settled(restarted, fresh_db, org, "completed")
            started = _started_events(fresh_db, org)
            assert len(started) == 1, started
            assert started[0][0] == described.run_id
            assert _queue_row(fresh_db, org) == ("completed", described.run_id, True)
        finally:
            stop_pipeline(restarted)


async def test_workflow_started_precedes_the_workflows_own_events(
    fresh_db: str, kafka_bootstrap: str, temporal_client: Client, tmp_path: Path
) -> None:
    # The email step fails and is retried for as long as the test runs: the workflow has
    # emitted its first events but is still running when the pipeline comes back.
    stuck_email = {
        "PIPELINE_EMAIL_PROVIDER": "smtp",
        "PIPELINE_SMTP_HOST": "127.0.0.1",
        "PIPELINE_SMTP_PORT": str(_closed_port()),
        "PIPELINE_BOOTSTRAP_PROVIDER_MAX_ATTEMPTS": "1000",
        "PIPELINE_BOOTSTRAP_RETRY_INITIAL_MS": "500",
        "PIPELINE_BOOTSTRAP_RETRY_MAX_MS": "1000",
    }
    async with _killed_after_start(
        fresh_db, kafka_bootstrap, temporal_client, tmp_path, stuck_email
    ) as (env, org):
        handle = temporal_client.get_workflow_handle(ev.workflow_id_for(str(org)))
        try:
            # The worker reaches the email step while the pipeline is down.
            deadline = asyncio.get_running_loop().time() + HANG
            while ev.USER_INVITED not in event_types(fresh_db, org):
                assert asyncio.get_running_loop().time() < deadline, event_types(fresh_db, org)
                await asyncio.sleep(0.2)
            assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
            restarted = start_pipeline(env, tmp_path, "restarted")
            try:
                await _settled(restarted, fresh_db, org, "processing")

                async def recorded() -> bool:
                    return bool(_started_events(fresh_db, org)) and await consumed_everything(
                        restarted
                    )

                await eventually(recorded, "workflow_started recorded", restarted, HANG)
                described = await handle.describe()
                assert described.status == WorkflowExecutionStatus.RUNNING
                types = event_types(fresh_db, org)
                first_own = types.index(ev.ORGANIZATION_CREATED)
                assert types.count(ev.BOOTSTRAP_WORKFLOW_STARTED) == 1, types
                assert types.index(ev.BOOTSTRAP_WORKFLOW_STARTED) < first_own, types
                assert types[:4] == [
                    ev.BOOTSTRAP_INITIATED,
                    ev.QUEUE_PENDING,
                    ev.QUEUE_CLAIMED,
                    ev.BOOTSTRAP_WORKFLOW_STARTED,
                ], types
                assert _started_events(fresh_db, org)[0][0] == described.run_id
                assert _queue_row(fresh_db, org) == ("processing", described.run_id, True)
            finally:
                stop_pipeline(restarted)
        finally:
            await handle.terminate("test over")
