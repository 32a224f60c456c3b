"""Recorded histories of the bootstrap workflow replay on today's code (Temporal's Replayer).

``v1_activities_*``: recorded with the workflow before its event-store steps became local
activities (every step a regular activity: a worker running it when this code is deployed
must finish them on the old path). ``v2_local_*``: recorded with the local-activity path.
``v3_begin_*``: recorded since the start's record and the validation became one local
activity (``bootstrap.begin``), by scripts/record_bootstrap_histories.py.
Each set holds the happy path (two admins), a permanent email refusal (compensation:
invitations revoked, DNS record removed) and an invalid subdomain (validation fails).
They were recorded against the dev server by running the workflow with
tests/integration/bootstrap_harness.py (``run_bootstrap``), the input carrying the
queue event ids so the first step records ``workflow_started``.

A replay that issues other commands than the history holds raises (nondeterminism), so a
change of the command sequence without ``workflow.patched`` fails here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from pipeline.bootstrap.worker import workflow_runner
from pipeline.bootstrap.workflows import (
    BEGIN_PATCH,
    LOCAL_STORE_PATCH,
    OrganizationBootstrapWorkflow,
)

HISTORIES = Path(__file__).parent / "histories"
CASES = ("happy", "email_refused", "invalid_subdomain")


def _history(name: str) -> WorkflowHistory:
    data = json.loads((HISTORIES / f"{name}.json").read_text())
    return WorkflowHistory.from_json("org-bootstrap-recorded", data)


def _markers(history: WorkflowHistory, name: str, detail: str, key: str) -> list[str]:
    """``key`` of the JSON ``detail`` of every ``name`` marker, in history order."""
    found = []
    for event in history.events:
        if event.HasField("marker_recorded_event_attributes"):
            marker = event.marker_recorded_event_attributes
            if marker.marker_name == name:
                found.append(json.loads(marker.details[detail].payloads[0].data)[key])
    return found


def _patches(history: WorkflowHistory) -> set[str]:
    return set(_markers(history, "core_patch", "patch-data", "id"))


def _local_activity_types(history: WorkflowHistory) -> list[str]:
    return _markers(history, "core_local_activity", "data", "activity_type")


def _activity_types(history: WorkflowHistory) -> list[str]:
    return [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("version", ["v1_activities", "v2_local", "v3_begin"])
async def test_a_recorded_history_replays_on_todays_workflow(version: str, case: str) -> None:
    history = _history(f"{version}_{case}")
    replayer = Replayer(
        workflows=[OrganizationBootstrapWorkflow], workflow_runner=workflow_runner()
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


def test_the_histories_cover_both_paths() -> None:
    for case in CASES:
        old, new = _history(f"v1_activities_{case}"), _history(f"v2_local_{case}")
        assert LOCAL_STORE_PATCH not in _patches(old)
        assert LOCAL_STORE_PATCH in _patches(new)
        # The old path scheduled the event-store steps as regular activities; the new one
        # schedules only the provider calls (DNS, email, DNS removal).
        assert "bootstrap.record_started" in _activity_types(old)
        assert set(_activity_types(new)) <= {
            "bootstrap.create_dns_record",
            "bootstrap.send_invitation_email",
            "bootstrap.remove_dns_record",
        }


def test_the_begin_histories_record_the_start_and_validate_in_one_step() -> None:
    for case in CASES:
        before, after = _history(f"v2_local_{case}"), _history(f"v3_begin_{case}")
        assert BEGIN_PATCH not in _patches(before)
        assert {BEGIN_PATCH, LOCAL_STORE_PATCH} <= _patches(after)
        assert _local_activity_types(before)[:2] == [
            "bootstrap.record_started",
            "bootstrap.prepare",
        ]
        steps = _local_activity_types(after)
        assert steps[0] == "bootstrap.begin"
        assert "bootstrap.record_started" not in steps and "bootstrap.prepare" not in steps
