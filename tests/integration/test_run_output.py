"""What an operator reads from ``pipeline -v run``, and a start it does not look up twice.

Everything from the outside: bootstraps written with plain SQL, each start seen through
Temporal's own API, the real process's output and its ``/metrics`` page.

- Every line the process writes (the CLI, Faust's worker, the reader child) is in the
  one plain format of ``pipeline.logsetup`` (no terminal escape codes), and ``-v``
  really logs at debug (Faust's worker used to reset the root logger to info).
- Each job has its ``enqueued`` and ``started`` lines, with its job id and workflow id.
- All of it on either event loop ``PIPELINE_EVENT_LOOP`` offers (``pipeline.eventloop``):
  the process, its Kafka consumer thread and its reader child say which they run on.
- Once ready, the process resumes garbage collection with its own thresholds
  (``pipeline.gcpolicy``) and says so.
- The pending event of a job this process handed off comes back through Kafka and is
  skipped, without a second start and without reading the job's history (the debug
  line says which of the two decided).
"""

from __future__ import annotations

import asyncio
import re
import signal
import urllib.request
import uuid
from pathlib import Path

import psycopg
import pytest
from temporalio.client import Client

from pipeline import events as ev
from pipeline.dev.layout import DevLayout
from tests.integration.pipeline_process import (
    eventually,
    pipeline_env,
    slot_active,
    start_pipeline,
    stop_pipeline,
)
from tests.integration.test_pipeline_crash import (
    FAST_GROUP_ENV,
    consumed_everything,
    emit_bootstraps,
)

pytestmark = pytest.mark.integration

HANG = 180.0  # bounds a hang only
JOBS = 4
# pipeline.logsetup.LOG_FORMAT, written out: a test that imported it would pass whatever
# it said.
LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+ \S"
)


def _job_ids(dsn: str) -> dict[uuid.UUID, str]:
    """Organization -> the job id (its initiated event's id)."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT stream_id, id FROM domain_events WHERE event_type = %s",
            (ev.BOOTSTRAP_INITIATED,),
        ).fetchall()
    return {row[0]: str(row[1]) for row in rows}


def _started_orgs(dsn: str) -> set[uuid.UUID]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT stream_id FROM domain_events WHERE event_type = %s",
            (ev.BOOTSTRAP_WORKFLOW_STARTED,),
        ).fetchall()
    return {row[0] for row in rows}


def _starts_by_outcome(port: int) -> dict[str, float]:
    """``pipeline_workflow_starts_total`` from the /metrics page, by its outcome label."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        page = response.read().decode()
    found: dict[str, float] = {}
    for line in page.splitlines():
        match = re.match(r'pipeline_workflow_starts_total\{outcome="(\w+)"\} (\S+)$', line)
        if match:
            found[match[1]] = float(match[2])
    return found


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
async def test_verbose_run_writes_plain_lines_and_skips_its_own_starts_unread(
    dev_layout: DevLayout, fresh_db: str, temporal_client: Client, tmp_path: Path, loop: str
) -> None:
    env = {
        **pipeline_env(fresh_db, dev_layout.kafka_bootstrap, dev_layout.temporal_address, tmp_path),
        **FAST_GROUP_ENV,
        "PIPELINE_EVENT_LOOP": loop,
    }
    running = start_pipeline(env, tmp_path, verbose=True)
    orgs = [uuid.uuid4() for _ in range(JOBS)]
    try:
        await eventually(
            lambda: slot_active(fresh_db, running.settings.slot_name), "a reader", running
        )
        for org in orgs:  # one at a time, so each job is a handoff of its own
            emit_bootstraps(fresh_db, [org])
            await eventually(
                lambda org=org: org in _started_orgs(fresh_db),  # type: ignore[misc]
                f"workflow_started of {org}",
                running,
                HANG,
            )
        for org in orgs:
            described = await temporal_client.get_workflow_handle(
                ev.workflow_id_for(str(org))
            ).describe()
            assert described.run_id

        async def settled() -> bool:
            outcomes = await asyncio.to_thread(_starts_by_outcome, running.settings.web_port)
            return outcomes.get("skipped", 0) >= JOBS and await consumed_everything(running)

        await eventually(settled, "every pending event back and skipped", running, HANG)
        outcomes = _starts_by_outcome(running.settings.web_port)
    finally:
        stop_pipeline(running, signal.SIGTERM)

    text = running.log.read_text(errors="replace")
    assert running.proc.returncode == 0, text[-4000:]
    assert "\x1b" not in text, "terminal escape codes in a log file"
    assert "Traceback" not in text, text[-4000:]
    odd = [line for line in text.splitlines() if line.strip() and not LINE.match(line)]
    assert not odd, odd[:20]
    levels = {m[1] for m in (LINE.match(line) for line in text.splitlines()) if m}
    assert "DEBUG" in levels, "pipeline -v run wrote no debug line"
    # The agents' process, the thread where Faust runs aiokafka's consumer (Faust would
    # give it asyncio's loop whatever the app's), and the reader child (which logs at the
    # parent's level) say which loop they run on; the thread's line names the loop's module.
    assert len(re.findall(rf" DEBUG pipeline.eventloop event loop: {loop}$", text, re.M)) == 3
    module = {"uvloop": "uvloop", "asyncio": "asyncio.unix_events"}[loop]
    assert re.search(rf" Kafka consumer thread: event loop {re.escape(module)}$", text, re.M)
    # Collection resumed once the worker was ready, what start-up built frozen and full
    # collections rarer than CPython's default (pipeline.gcpolicy).
    resumed = re.findall(
        r" INFO pipeline.lifecycle started: garbage collection on \((\d+) objects "
        r"frozen, thresholds 700/10/100\)$",
        text,
        re.M,
    )
    assert len(resumed) == 1 and int(resumed[0]) > 100_000, resumed

    assert outcomes.get("started") == JOBS, outcomes
    assert outcomes.get("skipped") == JOBS, outcomes
    assert not outcomes.get("already_started"), outcomes
    jobs = _job_ids(fresh_db)
    unread = 0
    for org in orgs:
        workflow_id = ev.workflow_id_for(str(org))
        job_id = jobs[org]
        assert re.search(rf" INFO \S+ enqueued job_id={job_id} as event ", text), job_id
        assert re.search(
            rf" INFO \S+ started workflow_id={workflow_id} run_id=\S+ job_id={job_id} ", text
        )
        skips = re.findall(
            rf" DEBUG \S+ not starting workflow_id={workflow_id} job_id={job_id}: (.*)", text
        )
        assert len(skips) == 1, (workflow_id, skips)
        unread += "started by this process" in skips[0]
    # A stream's records are handled in order (pipeline.agents.dispatch), so a job's
    # pending event waits for the handoff of its initiated event, which recorded the start.
    assert unread == JOBS, f"{JOBS - unread} of {JOBS} skips read the job's history"
