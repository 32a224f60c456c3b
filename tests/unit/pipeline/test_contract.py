"""The event contract's examples and its validation: every example passes, every broken
event fails at the offending path (the document: test_contract_loader.py; its agreement
with the code: test_contract_agreement.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pipeline import events
from pipeline.contract import (
    Contract,
    ContractViolation,
    JsonObject,
    default_contract,
    validate_event,
)
from tests.unit.pipeline.contract_headers import check_headers

Mutation = Callable[[JsonObject], None]


def example(contract: Contract, event_type: str) -> JsonObject:
    """A fresh, mutable copy of the first example of ``event_type``."""
    return contract.examples(event_type)[0].payload


def section(event: JsonObject, key: str) -> JsonObject:
    value = event[key]
    assert isinstance(value, dict)
    return value


def first_admin(event: JsonObject) -> JsonObject:
    admins = section(event, "event_data")["admins"]
    assert isinstance(admins, list)
    admin = admins[0]
    assert isinstance(admin, dict)
    return admin


# ---- (a) the examples are valid ------------------------------------------------------


@pytest.mark.parametrize("event_type", sorted(events.ALL_EVENT_TYPES))
def test_every_example_passes_its_own_schema(contract: Contract, event_type: str) -> None:
    examples = contract.examples(event_type)
    assert examples, f"{event_type} has no example in the contract"
    for item in examples:
        assert item.payload["event_type"] == event_type
        contract.validate_event(item.payload)
        check_headers(contract, event_type, item.headers)


def test_module_level_validate_event_uses_the_default_contract(contract: Contract) -> None:
    validate_event(example(contract, events.BOOTSTRAP_INITIATED))
    assert default_contract() is default_contract()


def test_examples_are_copies_the_caller_may_change(contract: Contract) -> None:
    section(example(contract, events.ORGANIZATION_CREATED), "event_data")["name"] = ""
    contract.validate_event(example(contract, events.ORGANIZATION_CREATED))


def test_examples_of_one_bootstrap_share_the_organization_stream(contract: Contract) -> None:
    # Invariant 4: every event of a bootstrap is in the organization's stream, and the
    # workflow id is derived from it, never random.
    stream_ids = set()
    for event_type in events.ALL_EVENT_TYPES:
        payload = example(contract, event_type)
        stream_ids.add(payload["stream_id"])
        assert payload["stream_type"] == events.STREAM_TYPE_ORGANIZATION
        workflow_id = section(payload, "event_data").get("workflow_id")
        if workflow_id is not None:
            assert workflow_id == events.workflow_id_for(str(payload["stream_id"]))
    assert len(stream_ids) == 1


# ---- (b) broken events fail, naming the offending value -------------------------------


def set_data(key: str, value: object) -> Mutation:
    def mutate(event: JsonObject) -> None:
        section(event, "event_data")[key] = value  # type: ignore[assignment]

    return mutate


def set_field(key: str, value: object) -> Mutation:
    def mutate(event: JsonObject) -> None:
        event[key] = value  # type: ignore[assignment]

    return mutate


def delete(*keys: str) -> Mutation:
    def mutate(event: JsonObject) -> None:
        target = event
        for key in keys[:-1]:
            target = section(target, key)
        del target[keys[-1]]

    return mutate


def drop_admin_email(event: JsonObject) -> None:
    del first_admin(event)["email"]


def set_admin_email(value: str) -> Mutation:
    def mutate(event: JsonObject) -> None:
        first_admin(event)["email"] = value

    return mutate


INITIATED = events.BOOTSTRAP_INITIATED
PENDING = events.QUEUE_PENDING

BROKEN: list[tuple[str, str, Mutation, str]] = [
    # bad subdomain labels
    (
        "subdomain with upper case and underscore",
        INITIATED,
        set_data("subdomain", "Acme_Health"),
        "event_data.subdomain",
    ),
    (
        "subdomain starting with a hyphen",
        INITIATED,
        set_data("subdomain", "-acme"),
        "event_data.subdomain",
    ),
    (
        "subdomain ending with a hyphen",
        INITIATED,
        set_data("subdomain", "acme-"),
        "event_data.subdomain",
    ),
    (
        "subdomain of two labels",
        INITIATED,
        set_data("subdomain", "acme.health"),
        "event_data.subdomain",
    ),
    (
        "subdomain longer than 63",
        INITIATED,
        set_data("subdomain", "a" * 64),
        "event_data.subdomain",
    ),
    ("empty subdomain", INITIATED, set_data("subdomain", ""), "event_data.subdomain"),
    (
        "subdomain with a trailing newline",
        INITIATED,
        set_data("subdomain", "acme\n"),
        "event_data.subdomain",
    ),
    # admins
    ("admin without email", INITIATED, drop_admin_email, "event_data.admins[0].email"),
    (
        "admin email without @",
        INITIATED,
        set_admin_email("admin.acme.example"),
        "event_data.admins[0].email",
    ),
    (
        "admin email with a space",
        INITIATED,
        set_admin_email("ad min@acme.example"),
        "event_data.admins[0].email",
    ),
    (
        "admin email without domain dot",
        INITIATED,
        set_admin_email("admin@localhost"),
        "event_data.admins[0].email",
    ),
    ("no admins", INITIATED, set_data("admins", []), "event_data.admins"),
    ("admins not a list", INITIATED, set_data("admins", {"email": "a@b.co"}), "event_data.admins"),
    (
        "role with spaces",
        INITIATED,
        lambda e: first_admin(e).update(role="super admin"),
        "event_data.admins[0].role",
    ),
    (
        "unknown admin key",
        INITIATED,
        lambda e: first_admin(e).update(name="Ada"),
        "event_data.admins[0].name",
    ),
    # malformed uuids
    ("id not a uuid", INITIATED, set_field("id", "not-a-uuid"), "id"),
    (
        "stream_id in upper case",
        INITIATED,
        set_field("stream_id", "6F1C2D3E-4B5A-4C6D-8E7F-9A0B1C2D3E4F"),
        "stream_id",
    ),
    (
        "stream_id with a trailing newline",
        INITIATED,
        set_field("stream_id", "6f1c2d3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f\n"),
        "stream_id",
    ),
    (
        "job_id without hyphens",
        PENDING,
        set_data("job_id", "0b9e0c1a2f3d4e5f8a6b7c8d9e0f1a2b"),
        "event_data.job_id",
    ),
    (
        "causation_id truncated",
        PENDING,
        lambda e: section(e, "event_metadata").update(causation_id="0b9e0c1a"),
        "event_metadata.causation_id",
    ),
    (
        "random workflow id",
        PENDING,
        set_data("workflow_id", "bootstrap-42"),
        "event_data.workflow_id",
    ),
    # missing required fields
    ("no created_at", INITIATED, delete("created_at"), "created_at"),
    ("no idempotency_key column", INITIATED, delete("idempotency_key"), "idempotency_key"),
    ("no event_data.name", INITIATED, delete("event_data", "name"), "event_data.name"),
    (
        "no event_metadata.source",
        INITIATED,
        delete("event_metadata", "source"),
        "event_metadata.source",
    ),
    (
        "pipeline event without causation_id",
        PENDING,
        delete("event_metadata", "causation_id"),
        "event_metadata.causation_id",
    ),
    (
        "pipeline event with a null idempotency key",
        PENDING,
        set_field("idempotency_key", None),
        "idempotency_key",
    ),
    ("no event_data.input", PENDING, delete("event_data", "input"), "event_data.input"),
    # other envelope and data rules
    ("stream_version 0", INITIATED, set_field("stream_version", 0), "stream_version"),
    ("stream_version as text", INITIATED, set_field("stream_version", "1"), "stream_version"),
    ("another stream type", INITIATED, set_field("stream_type", "invitation"), "stream_type"),
    (
        "PostgreSQL text timestamp",
        INITIATED,
        set_field("created_at", "2025-11-26 03:01:00.123+00"),
        "created_at",
    ),
    ("event_data not an object", INITIATED, set_field("event_data", "[]"), "event_data"),
    ("unknown event_data key", INITIATED, set_data("subdomian", "acme"), "event_data.subdomian"),
    (
        "unknown DNS record type",
        events.DNS_RECORD_CREATED,
        set_data("record_type", "MX"),
        "event_data.record_type",
    ),
    (
        "invitation token hash not hex",
        events.USER_INVITED,
        set_data("token_hash", "abc"),
        "event_data.token_hash",
    ),
    (
        "expires_at not a date-time",
        events.USER_INVITED,
        set_data("expires_at", "next week"),
        "event_data.expires_at",
    ),
    # an event labelled with another known type fails on that type's schema
    (
        "initiated labelled organization.created",
        INITIATED,
        set_field("event_type", events.ORGANIZATION_CREATED),
        "event_data.admins",
    ),
]


@pytest.mark.parametrize(
    ("event_type", "mutate", "path"),
    [pytest.param(event_type, mutate, path, id=name) for name, event_type, mutate, path in BROKEN],
)
def test_broken_event_fails_at_the_offending_path(
    contract: Contract, event_type: str, mutate: Mutation, path: str
) -> None:
    event = example(contract, event_type)
    mutate(event)
    with pytest.raises(ContractViolation) as caught:
        contract.validate_event(event)
    assert caught.value.path == path, str(caught.value)
    assert caught.value.event_type == event["event_type"]
    assert caught.value.message


@pytest.mark.parametrize(
    ("event_type", "expected"),
    [
        pytest.param(
            "organization.bootstrap.initated", "organization.bootstrap.initated", id="typo"
        ),
        pytest.param("", "", id="empty"),
        pytest.param(None, None, id="null"),
        pytest.param(42, None, id="not-a-string"),
    ],
)
def test_unknown_event_type_is_a_violation(
    contract: Contract, event_type: object, expected: str | None
) -> None:
    event = example(contract, INITIATED)
    event["event_type"] = event_type  # type: ignore[assignment]
    with pytest.raises(ContractViolation) as caught:
        contract.validate_event(event)
    assert caught.value.path == "event_type"
    assert caught.value.event_type == expected


def test_missing_event_type_is_a_violation(contract: Contract) -> None:
    event = example(contract, INITIATED)
    del event["event_type"]
    with pytest.raises(ContractViolation) as caught:
        contract.validate_event(event)
    assert (caught.value.event_type, caught.value.path) == (None, "event_type")


def test_violation_reads_well_in_a_dead_letter_reason(contract: Contract) -> None:
    event = example(contract, INITIATED)
    set_admin_email("nobody")(event)
    with pytest.raises(ContractViolation) as caught:
        contract.validate_event(event)
    text = str(caught.value)
    assert text.startswith("organization.bootstrap.initiated: event_data.admins[0].email: ")
    assert "must match" in text


def test_validation_leaves_the_event_unchanged(contract: Contract) -> None:
    event = example(contract, INITIATED)
    before = example(contract, INITIATED)
    contract.validate_event(event)
    assert event == before


def test_metadata_and_envelope_accept_extra_keys(contract: Contract) -> None:
    # Metadata is open for tracing keys; the row may grow columns (e.g. a sequence number).
    event = example(contract, PENDING)
    section(event, "event_metadata")["trace_id"] = "4bf92f3577b34da6a3ce929d0e0e4736"
    event["sequence_number"] = 17
    contract.validate_event(event)


def test_validate_event_accepts_any_mapping(contract: Contract) -> None:
    from types import MappingProxyType

    contract.validate_event(MappingProxyType(example(contract, INITIATED)))
