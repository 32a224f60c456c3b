"""Migration 0005 covers exactly the contract's event types and metadata requirements."""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.contract import default_contract

MIGRATION = Path(__file__).resolve().parents[3] / "sql/migrations/0005_event_metadata_contract.sql"


def _lists() -> list[set[str]]:
    sql = MIGRATION.read_text()
    blocks = re.findall(r"NEW\.event_type (?:NOT )?IN \((.*?)\)", sql, re.S)
    return [set(re.findall(r"'([^']+)'", block)) for block in blocks]


def _required_metadata() -> dict[str, set[str]]:
    return {
        spec.event_type: set(spec.payload_schema["properties"]["event_metadata"]["required"])
        for spec in default_contract().messages()
    }


def test_every_event_type_of_the_contract_is_covered() -> None:
    covered, _ = _lists()
    assert covered == set(_required_metadata())


def test_causation_id_is_required_exactly_where_the_contract_requires_it() -> None:
    _, causation = _lists()
    assert causation == {t for t, req in _required_metadata().items() if "causation_id" in req}


def test_the_trigger_handles_every_required_metadata_field() -> None:
    # source gets a default, causation_id is refused when missing: nothing else is required.
    for event_type, required in _required_metadata().items():
        assert required <= {"source", "causation_id"}, event_type
        assert "source" in required, event_type
