"""Routing a record by its ``event_type`` header, else by its value parsed once (pure), and
the handlers acting on what routing said: a header never makes an agent act on a value
of another type (no services: any I/O fails the test)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import orjson
import pytest

from pipeline import events as ev
from pipeline.agents import effects, records
from pipeline.agents.claimcheck import ClaimChecks
from pipeline.agents.routing import route
from pipeline.agents.runtime import AgentRuntime, Record
from replication.record_value import EVENT_TYPE_HEADER
from tests.unit.pipeline.agents.samples import HEADERS, ORG, row

INITIATED = orjson.dumps(row())
PENDING_DATA = {
    "job_id": "00000000-0000-0000-0000-000000000001",
    "workflow_type": "OrganizationBootstrapWorkflow",
    "workflow_id": ev.workflow_id_for(str(ORG)),
    "source_event_id": "00000000-0000-0000-0000-000000000002",
    "input": {"org_id": str(ORG), "name": "Acme", "subdomain": "acme", "admins": []},
}


def _record(value: bytes | None, event_type: bytes | None = None) -> Record:
    headers = [*HEADERS] + ([(EVENT_TYPE_HEADER, event_type)] if event_type is not None else [])
    return Record("domain-events", 0, 7, str(ORG).encode(), value, tuple(headers))


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """Every value parsed (records.loads is what every parse of a value goes through)."""
    seen: list[bytes] = []
    real = records.loads

    def counting(value: bytes, *, exact: bool = True) -> object:
        seen.append(value)
        return real(value, exact=exact)

    monkeypatch.setattr(records, "loads", counting)
    yield seen


def test_the_header_wins_and_the_value_is_not_parsed(parses: list[bytes]) -> None:
    # The header says pending, the value says initiated: routing believes the header
    # (the handler's decode then finds the mismatch, below).
    routed = route(_record(INITIATED, ev.QUEUE_PENDING.encode()))
    assert (routed.event_type, routed.row) == (ev.QUEUE_PENDING, None)
    assert AgentRuntime.wants_start(routed) and not AgentRuntime.wants_enqueue(routed)
    assert route(_record(b"not json", b"invitation.email.sent")).event_type == (
        "invitation.email.sent"
    )
    assert parses == []


def test_without_the_header_the_value_is_parsed_once_and_kept(parses: list[bytes]) -> None:
    routed = route(_record(INITIATED))
    assert routed.event_type == ev.BOOTSTRAP_INITIATED
    assert routed.row == orjson.loads(INITIATED)
    assert AgentRuntime.wants_enqueue(routed) and not AgentRuntime.wants_start(routed)
    assert parses == [INITIATED]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b'{"event_type": "workflow.queue.pending", "x": 1}', "workflow.queue.pending"),
        (b'{"event_type": 3}', None),
        (b"[1, 2]", None),
        (b"not json", None),
        (b"[" * 20_000 + b"]" * 20_000, None),
        (None, None),
    ],
)
def test_without_the_header_the_value_routes_without_judging(
    value: bytes | None, expected: str | None
) -> None:
    assert route(_record(value)).event_type == expected


def test_a_header_that_is_not_utf8_is_ignored(parses: list[bytes]) -> None:
    routed = route(_record(INITIATED, b"\xff\xfe"))
    assert routed.event_type == ev.BOOTSTRAP_INITIATED
    assert parses == [INITIATED]


async def test_the_agent_that_handles_a_record_parses_its_value_once(
    parses: list[bytes],
) -> None:
    decoder = ClaimChecks(effects.Database("postgresql://nobody@127.0.0.1:1/none", "t"), "t")
    for record in (_record(INITIATED, ev.BOOTSTRAP_INITIATED.encode()), _record(INITIATED)):
        parses.clear()
        routed = route(record)
        event = await decoder.decode(routed.record, None, routed.row)
        assert event.event_type == ev.BOOTSTRAP_INITIATED
        assert parses == [INITIATED]  # by routing (no header) or by the decode, not both


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[AgentRuntime, list[str]]]:
    """A runtime whose every database use is recorded and fails (nothing may reach one)."""
    used: list[str] = []

    async def no_io(self: effects.Database) -> object:
        used.append("database")
        raise ConnectionError("no services in unit tests")

    monkeypatch.setattr(effects.Database, "connection", no_io)

    async def dead_letter(record: Record, headers: list[tuple[str, bytes]]) -> None:
        used.append("dead letter")

    dsn = "postgresql://nobody@127.0.0.1:1/none"
    yield (
        AgentRuntime(
            worker_id="w",
            consumer="c",
            enqueue_db=effects.Database(dsn, "enqueue"),
            starter_db=effects.Database(dsn, "starter"),
            projection_db=effects.Database(dsn, "projection"),
            temporal=effects.WorkflowStartClient("127.0.0.1:1", "default", "unused"),
            dead_letter=dead_letter,
        ),
        used,
    )


async def _handle_all(runtime: AgentRuntime, record: Record) -> None:
    # A handler that reached for a database would retry for ever: bounded here.
    routed = route(record)
    await asyncio.wait_for(runtime.enqueue_routed(routed), 5)
    await asyncio.wait_for(runtime.start_routed(route(record)), 5)
    await asyncio.wait_for(runtime.enqueue(record), 5)  # the replay/redrive entry points
    await asyncio.wait_for(runtime.start(record), 5)


async def test_a_header_that_disagrees_with_the_value_makes_no_agent_act(
    runtime: tuple[AgentRuntime, list[str]], parses: list[bytes]
) -> None:
    """The adversarial record: an initiated event whose header says pending. The enqueue
    agent (what the value is for) passes over it by its header; the starter agent (what
    the header says) decodes it and rejects the mismatch (test_records.py; the starter's
    own check of the type stands behind it): neither emits nor starts. The projection
    agent rejects it the same way and dead-letters it instead of projecting an initiated
    event nothing enqueues (test_agents.py)."""
    agents, used = runtime
    pending = orjson.dumps(row(event_type=ev.QUEUE_PENDING, event_data=PENDING_DATA))
    await _handle_all(agents, _record(INITIATED, ev.QUEUE_PENDING.encode()))
    await _handle_all(agents, _record(pending, ev.BOOTSTRAP_INITIATED.encode()))
    await _handle_all(agents, _record(INITIATED, b"invitation.email.sent"))
    assert used == []
    # Each handler that acted on the header parsed the value once, to decode it.
    assert len(parses) == 4


async def test_a_value_that_is_not_json_behind_a_header_is_skipped_by_its_handler(
    runtime: tuple[AgentRuntime, list[str]],
) -> None:
    agents, used = runtime
    for says in (ev.BOOTSTRAP_INITIATED, ev.QUEUE_PENDING):
        await _handle_all(agents, _record(b"{not json", says.encode()))
        await _handle_all(agents, _record(None, says.encode()))
    assert used == []  # the projection agent dead-letters them (test_agents.py)
