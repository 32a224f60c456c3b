"""batching.InOrderAcks: acks go out in each partition's arrival order (pure)."""

from __future__ import annotations

import itertools

import pytest

from pipeline.consumer.batching import InOrderAcks


async def test_an_event_finished_early_waits_for_the_ones_before_it() -> None:
    acked: list[str] = []

    async def ack(event: str) -> None:
        acked.append(event)

    acks = InOrderAcks(ack)
    done = {e: acks.track("p0", e) for e in ("a", "b", "c")}
    other = acks.track("p1", "x")
    await done["c"]()
    await done["b"]()
    assert acked == []  # 'a' is unfinished: acking b or c would let Faust commit past it
    await other()
    assert acked == ["x"]  # another partition does not wait
    await done["a"]()
    assert acked == ["x", "a", "b", "c"]
    assert acks.waiting() == 0


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
async def test_acked_events_are_always_a_prefix_in_any_finishing_order(
    order: tuple[int, ...],
) -> None:
    acked: list[int] = []

    async def ack(event: int) -> None:
        acked.append(event)

    acks = InOrderAcks(ack)
    done = [acks.track("p", e) for e in range(4)]
    finished: set[int] = set()
    for e in order:
        await done[e]()
        finished.add(e)
        assert acked == list(range(len(acked)))  # a prefix, in order
        assert set(acked) <= finished
        # everything finished with nothing unfinished before it is acked
        assert len(acked) == next(i for i in range(5) if i not in finished)
