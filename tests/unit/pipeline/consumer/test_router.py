"""consumer.router: which records go where, and a record acked only when all its effects
are done, in partition order (pure; no Faust, no services)."""

from __future__ import annotations

import itertools

import pytest

from pipeline import events as ev
from pipeline.consumer.batching import InOrderAcks
from pipeline.consumer.router import Completion, Effect, effects_for, handler_effect


def test_every_record_is_projected_and_only_two_types_reach_a_handler() -> None:
    assert effects_for(ev.BOOTSTRAP_INITIATED) == (Effect.PROJECT, Effect.ENQUEUE)
    assert effects_for(ev.QUEUE_PENDING) == (Effect.PROJECT, Effect.START)
    for other in (ev.QUEUE_CLAIMED, ev.BOOTSTRAP_WORKFLOW_STARTED, "invitation.email.sent", None):
        assert effects_for(other) == (Effect.PROJECT,)
    assert handler_effect(effects_for(ev.BOOTSTRAP_INITIATED)) is Effect.ENQUEUE
    assert handler_effect(effects_for(ev.QUEUE_PENDING)) is Effect.START
    assert handler_effect(effects_for(None)) is None


async def test_a_record_settles_once_after_its_last_effect() -> None:
    settled: list[int] = []

    async def settle() -> None:
        settled.append(1)

    c = Completion.of((Effect.PROJECT, Effect.START), settle)
    await c.done(Effect.PROJECT)
    assert settled == [] and not c.settled  # the start has not happened yet
    await c.done(Effect.START)
    assert settled == [1] and c.settled
    with pytest.raises(RuntimeError):
        await c.done(Effect.START)  # a double count would ack before an effect happened
    with pytest.raises(RuntimeError):
        await Completion.of((Effect.PROJECT,), settle).done(Effect.ENQUEUE)
    with pytest.raises(ValueError):
        Completion.of((), settle)


@pytest.mark.parametrize("order", list(itertools.permutations(range(6))))
async def test_acks_are_a_prefix_of_the_records_whose_effects_are_all_done(
    order: tuple[int, ...],
) -> None:
    """One partition: initiated, other, pending, unreadable. The four projections and the
    two handlers finish in every order; after each step exactly the longest prefix of
    records whose every effect is done has been acked."""
    types = [ev.BOOTSTRAP_INITIATED, "invitation.email.sent", ev.QUEUE_PENDING, None]
    acked: list[int] = []

    async def ack(offset: int) -> None:
        acked.append(offset)

    acks: InOrderAcks[int] = InOrderAcks(ack)
    completions = [
        Completion.of(effects_for(t), acks.track("p0", offset)) for offset, t in enumerate(types)
    ]
    steps = [
        *((c, Effect.PROJECT) for c in completions),
        (completions[0], Effect.ENQUEUE),
        (completions[2], Effect.START),
    ]
    for k in order:
        c, effect = steps[k]
        await c.done(effect)
        prefix = 0
        while prefix < len(completions) and completions[prefix].settled:
            prefix += 1
        assert acked == list(range(prefix))
    assert acked == [0, 1, 2, 3]
