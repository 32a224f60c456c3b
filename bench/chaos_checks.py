"""Verdicts of the chaos run, pure: over what the observers read from outside.

Per organization, the event chain (its events in stream order, which is commit order),
its queue row and its Temporal executions; over the topic, duplicate records; per fault,
the recovery time. Nothing here does I/O, so each rule is unit-tested on its own.
"""

from __future__ import annotations

import itertools
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from pipeline import events as ev

HEAD = (
    ev.BOOTSTRAP_INITIATED,
    ev.QUEUE_PENDING,
    ev.QUEUE_CLAIMED,
    ev.BOOTSTRAP_WORKFLOW_STARTED,
)
# The events a completed bootstrap holds exactly once, and those it holds once per admin.
ONCE = (
    *HEAD,
    ev.ORGANIZATION_CREATED,
    ev.DNS_RECORD_CREATED,
    ev.BOOTSTRAP_COMPLETED,
    ev.QUEUE_COMPLETED,
)
PER_ADMIN = (ev.USER_INVITED, ev.INVITATION_EMAIL_SENT)
TERMINAL = frozenset({ev.QUEUE_COMPLETED, ev.QUEUE_FAILED})
# Everything the workflow's own activities emit (after workflow_started, DESIGN.md inv. 9).
WORKFLOW_OWN = frozenset(ev.ALL_EVENT_TYPES - set(HEAD))


@dataclass(frozen=True, slots=True)
class Chain:
    """One organization's events in stream order (stream_version), with commit times."""

    org_id: str
    types: tuple[str, ...]
    admins: int


@dataclass(frozen=True, slots=True)
class QueueRow:
    status: str
    workflow_id: str | None
    run_id: str | None
    started_at_set: bool


@dataclass(slots=True)
class OrgVerdict:
    outcome: str  # completed | failed | none
    missing: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    out_of_order: list[str] = field(default_factory=list)


def judge_chain(chain: Chain) -> OrgVerdict:
    """What is missing, doubled or out of order in one organization's chain."""
    types = chain.types
    counts = Counter(types)
    if counts[ev.QUEUE_COMPLETED]:
        outcome = "completed"
    elif counts[ev.QUEUE_FAILED]:
        outcome = "failed"
    else:
        outcome = "none"
    verdict = OrgVerdict(outcome)
    expected: dict[str, int] = dict.fromkeys(HEAD, 1)
    if outcome == "completed":
        expected.update(dict.fromkeys(ONCE, 1))
        expected.update(dict.fromkeys(PER_ADMIN, chain.admins))
    for event_type, n in expected.items():
        if counts[event_type] < n:
            verdict.missing.append(event_type)
    for event_type, n in counts.items():
        allowed = expected.get(event_type, 1)
        if event_type in PER_ADMIN and outcome != "completed":
            allowed = chain.admins
        if n > allowed:
            verdict.duplicated.append(f"{event_type} x{n}")
    verdict.out_of_order = order_problems(types)
    return verdict


def order_problems(types: Sequence[str]) -> list[str]:
    """The chain's order rules that ``types`` (in commit order) breaks.

    initiated → pending → claimed → workflow_started, as the reference document lists
    them; every event of the workflow's own activities after workflow_started; the queue
    outcome last.
    """
    problems: list[str] = []
    first = {t: types.index(t) for t in HEAD if t in types}
    present = [t for t in HEAD if t in first]
    for earlier, later in itertools.pairwise(present):
        if first[earlier] > first[later]:
            problems.append(f"{later} before {earlier}")
    started = first.get(ev.BOOTSTRAP_WORKFLOW_STARTED)
    if started is not None:
        early = [t for t in types[:started] if t in WORKFLOW_OWN]
        if early:
            problems.append(f"{early[0]} before {ev.BOOTSTRAP_WORKFLOW_STARTED}")
    outcomes = [i for i, t in enumerate(types) if t in TERMINAL]
    if outcomes and outcomes[-1] != len(types) - 1:
        problems.append(f"{types[outcomes[-1] + 1]} after {types[outcomes[-1]]}")
    return problems


def judge_queue(
    row: QueueRow | None, workflow_id: str, run_ids: Sequence[str], started_run_id: str | None
) -> list[str]:
    """How the queue row disagrees with a completed bootstrap and Temporal's one run."""
    if row is None:
        return ["no queue row"]
    problems = []
    if row.status != "completed":
        problems.append(f"queue row {row.status}")
    if row.workflow_id != workflow_id:
        problems.append(f"queue workflow_id {row.workflow_id}")
    if row.run_id is None or not row.started_at_set:
        problems.append("queue run_id/started_at NULL")
    elif len(run_ids) == 1 and row.run_id != run_ids[0]:
        problems.append("queue run_id is not Temporal's")
    if started_run_id is not None and len(run_ids) == 1 and started_run_id != run_ids[0]:
        problems.append("workflow_started run_id is not Temporal's")
    return problems


def duplicate_count(keys: Iterable[object]) -> int:
    """How many items repeat an earlier one."""
    return sum(n - 1 for n in Counter(keys).values() if n > 1)


@dataclass(frozen=True, slots=True)
class FaultWindow:
    """A fault as it happened: wall-clock start and end (component restored)."""

    index: int
    kind: str
    start: float
    end: float


def first_after(times: Sequence[float], moment: float) -> float | None:
    """Seconds from ``moment`` to the first of the sorted ``times`` after it."""
    lo, hi = 0, len(times)
    while lo < hi:
        mid = (lo + hi) // 2
        if times[mid] <= moment:
            lo = mid + 1
        else:
            hi = mid
    return times[lo] - moment if lo < len(times) else None


def worst_wait(
    initiated: Mapping[str, float], pending: Mapping[str, float], since: float, until: float
) -> float | None:
    """The longest initiated → pending wait of the bootstraps committed in [since, until)
    (a bootstrap that never got its pending counts as waiting until ``until``)."""
    waits = [pending.get(org, until) - at for org, at in initiated.items() if since <= at < until]
    return max(waits) if waits else None


def median_max(values: Sequence[float]) -> tuple[float, float] | None:
    if not values:
        return None
    return statistics.median(values), max(values)
