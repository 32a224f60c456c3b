"""Checking Kafka headers against the contract's headers schema (shared by the contract
tests)."""

from __future__ import annotations

import fastjsonschema

from pipeline.contract import Contract


def check_headers(contract: Contract, event_type: str, headers: dict[str, str]) -> None:
    """Kafka headers, decoded to text, against the message's headers schema (draft-07);
    raises fastjsonschema's JsonSchemaValueException naming the header."""
    schema = contract.message(event_type).headers_schema
    assert schema is not None, f"{event_type} has no headers schema"
    validate = fastjsonschema.compile(
        {"$schema": "http://json-schema.org/draft-07/schema#", **schema}, use_default=False
    )
    validate(headers)
