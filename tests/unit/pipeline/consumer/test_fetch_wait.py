"""The fetch's wait: short while a partition is left out of it, long when it covers all."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.consumer import fetching


@dataclass
class _State:
    paused: bool = False


@dataclass
class _Assignment:
    states: dict[str, _State]

    @property
    def tps(self) -> list[str]:
        return list(self.states)

    def state_value(self, tp: str) -> _State:
        return self.states[tp]


@dataclass
class _Fetcher:
    """The attributes of aiokafka's Fetcher the patch reads and sets."""

    _records: dict[str, object] = field(default_factory=dict)
    _fetch_max_wait_ms: int = 1500
    built_with: list[int] = field(default_factory=list)

    def _get_actions_per_node(self, assignment: Any) -> str:
        self.built_with.append(self._fetch_max_wait_ms)
        return "actions"


def test_the_wait_is_long_only_when_no_partition_is_left_out() -> None:
    assert fetching.fetch_wait_ms(0, 0) == fetching.IDLE_FETCH_MAX_WAIT_MS
    assert fetching.fetch_wait_ms(1, 0) == fetching.FETCH_MAX_WAIT_MS
    assert fetching.fetch_wait_ms(0, 2) == fetching.FETCH_MAX_WAIT_MS
    assert fetching.FETCH_MAX_WAIT_MS < fetching.IDLE_FETCH_MAX_WAIT_MS


def test_each_fetch_is_built_with_the_wait_its_partitions_allow() -> None:
    fetcher = _Fetcher()
    fetching.wait_by_what_is_left_out(fetcher)
    assignment = _Assignment({"t-0": _State(), "t-1": _State()})
    assert fetcher._get_actions_per_node(assignment) == "actions"  # idle: all in the fetch
    fetcher._records["t-0"] = object()  # t-0's records wait to be taken: left out
    fetcher._get_actions_per_node(assignment)
    fetcher._records.clear()
    assignment.states["t-1"].paused = True  # paused: left out
    fetcher._get_actions_per_node(assignment)
    assignment.states["t-1"].paused = False
    fetcher._get_actions_per_node(assignment)
    assert fetcher.built_with == [
        fetching.IDLE_FETCH_MAX_WAIT_MS,
        fetching.FETCH_MAX_WAIT_MS,
        fetching.FETCH_MAX_WAIT_MS,
        fetching.IDLE_FETCH_MAX_WAIT_MS,
    ]
