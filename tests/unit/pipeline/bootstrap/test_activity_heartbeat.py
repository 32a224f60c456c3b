"""The worker's heartbeat interceptor and the workflow's heartbeat timeouts (issue 14)."""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import inspect
from pathlib import Path
from typing import Any

from temporalio.testing import ActivityEnvironment

from pipeline.bootstrap import workflows
from pipeline.bootstrap.heartbeat import HEARTBEAT_EVERY, HEARTBEAT_TIMEOUT, _Heartbeating

BOUND = 30.0  # bounds a hang only


class _Activity:
    """Stands for the next interceptor: runs until ``release`` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def execute_activity(self, input: Any) -> str:
        await self.release.wait()
        return "done"


async def test_an_activity_heartbeats_while_it_runs_and_stops_when_it_returns() -> None:
    beats: list[tuple[Any, ...]] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(details)
    inner = _Activity()

    async def run() -> str:
        result: str = await _Heartbeating(inner).execute_activity(None)  # type: ignore[arg-type]
        return result

    task = asyncio.create_task(env.run(run))
    async with asyncio.timeout(BOUND):
        while len(beats) < 3:  # it keeps beating for as long as the activity runs
            await asyncio.sleep(0.05)
    inner.release.set()
    assert await asyncio.wait_for(task, BOUND) == "done"
    after = len(beats)
    await asyncio.sleep(HEARTBEAT_EVERY * 2)
    assert len(beats) == after  # the beating task ended with the activity


def test_beats_come_well_within_the_timeout() -> None:
    # Temporal's SDK sends one heartbeat per 0.8 x timeout at most; the local beat must
    # be more frequent than that for every window to carry one.
    assert 0.8 * HEARTBEAT_TIMEOUT.total_seconds() / 2 > HEARTBEAT_EVERY


def test_every_activity_of_the_workflow_has_the_heartbeat_timeout() -> None:
    tree = ast.parse(Path(inspect.getfile(workflows)).read_text())
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "execute_activity_method"
    ]
    assert calls
    for call in calls:
        keywords = {k.arg: k.value for k in call.keywords}
        assert "heartbeat_timeout" in keywords, ast.unparse(call)
        assert ast.unparse(keywords["heartbeat_timeout"]) == "HEARTBEAT_TIMEOUT"


async def test_a_local_activity_does_not_heartbeat() -> None:
    # A local activity runs inside its workflow task, which cannot carry heartbeats.
    beats: list[tuple[Any, ...]] = []
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, is_local=True)
    env.on_heartbeat = lambda *details: beats.append(details)
    inner = _Activity()

    async def run() -> str:
        result: str = await _Heartbeating(inner).execute_activity(None)  # type: ignore[arg-type]
        return result

    task = asyncio.create_task(env.run(run))
    await asyncio.sleep(HEARTBEAT_EVERY * 2.5)
    inner.release.set()
    assert await asyncio.wait_for(task, BOUND) == "done"
    assert beats == []
