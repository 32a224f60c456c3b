"""effects: the agents' retry schedule (pure, no services)."""

from __future__ import annotations

import pytest

from pipeline.agents.effects import retry_delay


def test_retry_delay_doubles_and_is_capped() -> None:
    assert [retry_delay(n, base=0.5, cap=5) for n in range(1, 7)] == [0.5, 1, 2, 4, 5, 5]
    assert retry_delay(10_000) == 30.0
    with pytest.raises(ValueError):
        retry_delay(0)
