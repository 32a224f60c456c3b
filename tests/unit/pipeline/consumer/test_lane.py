"""consumer.lane.ProjectionLane: batches folded in order, merged while a fold runs, each
record's projection done only after the fold that held it returned (no services)."""

from __future__ import annotations

import asyncio

import pytest

from pipeline.consumer.lane import ProjectionLane


def _tickets(n: int, base: int) -> list[int]:
    return list(range(base, base + n))


async def test_batches_queued_during_a_fold_are_folded_together_in_order() -> None:
    folds: list[list[int]] = []
    gate = asyncio.Event()
    settled: list[int] = []

    async def project(records: list[int]) -> None:
        folds.append(records)
        if len(folds) == 1:
            await gate.wait()  # the first fold is slow: the next batches queue up

    lane: ProjectionLane[int, int] = ProjectionLane(project, 100, settled.extend)
    task = asyncio.create_task(lane.run())
    await lane.put([0, 1], _tickets(2, 0), "t[0]@1")
    await asyncio.sleep(0)
    await lane.put([2], _tickets(1, 2), "t[0]@2")
    await lane.put([3, 4], _tickets(2, 3), "t[0]@4")
    assert settled == []  # nothing is done before its fold returned
    gate.set()
    for _ in range(10):
        await asyncio.sleep(0)
    assert folds == [[0, 1], [2, 3, 4]]
    assert settled == [0, 1, 2, 3, 4]
    task.cancel()
    await asyncio.wait([task])


async def test_put_waits_while_max_pending_records_are_unfolded() -> None:
    gate = asyncio.Event()

    async def project(records: list[int]) -> None:
        await gate.wait()

    lane: ProjectionLane[int, int] = ProjectionLane(project, 2, lambda tickets: None)
    task = asyncio.create_task(lane.run())
    await lane.put([0, 1], [], "t[0]@1")
    blocked = asyncio.create_task(lane.put([2], [], "t[0]@2"))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not blocked.done()  # backpressure: the loop stops taking records
    gate.set()
    await asyncio.wait_for(blocked, timeout=5)
    task.cancel()
    await asyncio.wait([task])


async def test_a_cancelled_fold_leaves_its_records_not_done() -> None:
    settled: list[int] = []

    async def project(records: list[int]) -> None:
        await asyncio.Event().wait()  # never returns: shutdown mid-fold

    lane: ProjectionLane[int, int] = ProjectionLane(project, 10, settled.extend)
    task = asyncio.create_task(lane.run())
    await lane.put([0], _tickets(1, 0), "t[0]@0")
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.wait([task])
    assert settled == []  # never acked, so delivered again


def test_max_pending_must_be_positive() -> None:
    async def project(records: list[int]) -> None:
        return None

    with pytest.raises(ValueError):
        ProjectionLane(project, 0, lambda tickets: None)
