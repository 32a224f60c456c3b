"""consumer.router: which records go where (pure; no Faust, no services). That a record
is acked only when all its effects are done is test_batching.py's."""

from __future__ import annotations

from pipeline import events as ev
from pipeline.consumer.router import Effect, effects_for, handler_effect


def test_every_record_is_projected_and_only_two_types_reach_a_handler() -> None:
    assert effects_for(ev.BOOTSTRAP_INITIATED) == (Effect.PROJECT, Effect.ENQUEUE)
    assert effects_for(ev.QUEUE_PENDING) == (Effect.PROJECT, Effect.START)
    for other in (ev.QUEUE_CLAIMED, ev.BOOTSTRAP_WORKFLOW_STARTED, "invitation.email.sent", None):
        assert effects_for(other) == (Effect.PROJECT,)
    assert handler_effect(effects_for(ev.BOOTSTRAP_INITIATED)) is Effect.ENQUEUE
    assert handler_effect(effects_for(ev.QUEUE_PENDING)) is Effect.START
    assert handler_effect(effects_for(None)) is None
