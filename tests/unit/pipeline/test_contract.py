"""The event contract: its examples, its validation, its agreement with the code and docs."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import fastjsonschema
import pytest

from pipeline import events
from pipeline.contract import (
    CONTRACT_PATH_ENV,
    DEFAULT_CONTRACT_PATH,
    Contract,
    ContractLoadError,
    ContractViolation,
    JsonObject,
    contract_path,
    default_contract,
    validate_event,
)
from replication.decoder import Relation, XLogData, decode_pgoutput, parse_copy_data
from replication.frame_loop import FrameLoop
from replication.rows import RelationCache
from replication.tracker import FlushTracker
from replication.value_encoder import ValueEncoder
from tests.unit.pgoutput_builder import read_frames

REPO_ROOT = Path(__file__).resolve().parents[3]
CONTRACTS_DIR = REPO_ROOT / "contracts"
NPM_HINT = "run `npm ci --prefix contracts` (needs Node 20 and the npm registry)"

Mutation = Callable[[JsonObject], None]


@pytest.fixture(scope="module")
def contract() -> Contract:
    return Contract.load(DEFAULT_CONTRACT_PATH)


def example(contract: Contract, event_type: str) -> JsonObject:
    """A fresh, mutable copy of the first example of ``event_type``."""
    return contract.examples(event_type)[0].payload


def section(event: JsonObject, key: str) -> JsonObject:
    value = event[key]
    assert isinstance(value, dict)
    return value


def check_headers(contract: Contract, event_type: str, headers: dict[str, str]) -> None:
    """Kafka headers, decoded to text, against the message's headers schema (draft-07);
    raises fastjsonschema's JsonSchemaValueException naming the header."""
    schema = contract.message(event_type).headers_schema
    assert schema is not None, f"{event_type} has no headers schema"
    validate = fastjsonschema.compile(
        {"$schema": "http://json-schema.org/draft-07/schema#", **schema}, use_default=False
    )
    validate(headers)


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


@pytest.mark.parametrize(
    ("change", "path"),
    [
        pytest.param({"commit_lsn": "0/16b3748"}, "headers.commit_lsn", id="lower-case-lsn"),
        pytest.param({"commit_lsn": "16B3748"}, "headers.commit_lsn", id="lsn-without-slash"),
        pytest.param({"idx": "-1"}, "headers.idx", id="negative-idx"),
        pytest.param({"idx": "01"}, "headers.idx", id="zero-padded-idx"),
        pytest.param({"commit_ts": "yesterday"}, "headers.commit_ts", id="bad-commit-ts"),
    ],
)
def test_broken_headers_fail(contract: Contract, change: dict[str, str], path: str) -> None:
    headers = {**contract.examples(INITIATED)[0].headers, **change}
    with pytest.raises(fastjsonschema.JsonSchemaValueException) as caught:
        check_headers(contract, INITIATED, headers)
    assert caught.value.name == path.replace("headers.", "data.")


def test_missing_header_fails(contract: Contract) -> None:
    headers = dict(contract.examples(INITIATED)[0].headers)
    del headers["idx"]
    with pytest.raises(fastjsonschema.JsonSchemaValueException, match="idx"):
        check_headers(contract, INITIATED, headers)


def test_the_readers_headers_follow_the_contract(contract: Contract) -> None:
    """The headers the reader's FrameLoop puts on each record (golden frames of a real
    PostgreSQL) are what the contract says every event carries."""
    relations = RelationCache()
    sent: list[list[tuple[str, bytes]]] = []
    loop = FrameLoop(
        ValueEncoder(relations).encode,
        lambda pos, key, value, headers: sent.append(headers),
        FlushTracker(),
        1000,
    )
    frames = read_frames("multi_row_insert.bin")
    i = 0
    while i < len(frames):
        i = loop.run(frames, i)
        if i < len(frames):  # the Relation: the session's part
            msg = parse_copy_data(frames[i])
            if isinstance(msg, XLogData) and isinstance(
                rel := decode_pgoutput(msg.payload), Relation
            ):
                relations.add(rel)
            i += 1
    assert len(sent) == 3
    for headers in sent:
        check_headers(contract, INITIATED, {k: v.decode() for k, v in headers})


# ---- (c) the contract describes exactly what the code emits and consumes -------------


def test_contract_event_types_are_the_codes_event_types(contract: Contract) -> None:
    in_contract = contract.event_types()
    in_code = events.ALL_EVENT_TYPES
    assert in_contract == in_code, (
        f"only in the contract: {sorted(in_contract - in_code)}; "
        f"only in pipeline/events.py: {sorted(in_code - in_contract)}"
    )


def test_operations_match_the_design(contract: Contract) -> None:
    def senders(event_type: str) -> tuple[str, ...]:
        return contract.message(event_type).sent_by

    # The pipeline consumes the request and emits the queue events that follow it.
    assert contract.message(INITIATED).received_by
    assert not senders(INITIATED)
    assert "starterReceiveQueuePending" in contract.message(PENDING).received_by
    assert senders(PENDING) == ("enqueueSendQueuePending",)
    assert senders(events.QUEUE_CLAIMED) == ("starterSendClaimAndStart",)
    assert senders(events.BOOTSTRAP_WORKFLOW_STARTED) == ("starterSendClaimAndStart",)
    pipeline_emitted = {INITIATED, PENDING, events.QUEUE_CLAIMED, events.BOOTSTRAP_WORKFLOW_STARTED}
    # The accept page of `pipeline run` records an accepted invitation.
    assert senders(events.INVITATION_ACCEPTED) == ("acceptPageSendInvitationAccepted",)
    for event_type in events.ALL_EVENT_TYPES - pipeline_emitted - {events.INVITATION_ACCEPTED}:
        assert senders(event_type) == ("workerSendWorkflowEvents",), event_type
    for event_type in events.ALL_EVENT_TYPES:
        assert "projectionReceiveAll" in contract.message(event_type).received_by


def test_contract_topic_is_the_domain_events_topic(contract: Contract) -> None:
    assert contract.topic == "domain-events"


# ---- loading -------------------------------------------------------------------------


def write_variant(tmp_path: Path, old: str, new: str) -> Path:
    text = DEFAULT_CONTRACT_PATH.read_text(encoding="utf-8")
    assert old in text
    target = tmp_path / "contract.yaml"
    target.write_text(text.replace(old, new, 1), encoding="utf-8")
    return target


def test_env_override_selects_the_document(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    variant = write_variant(tmp_path, "title: Organization bootstrap events", "title: Variant")
    monkeypatch.setenv(CONTRACT_PATH_ENV, str(variant))
    assert contract_path() == variant
    assert Contract.load().title == "Variant"
    monkeypatch.delenv(CONTRACT_PATH_ENV)
    assert contract_path() == DEFAULT_CONTRACT_PATH


def test_missing_document_names_the_env_variable(tmp_path: Path) -> None:
    with pytest.raises(ContractLoadError, match=CONTRACT_PATH_ENV):
        Contract.load(tmp_path / "absent.yaml")


def test_unquoted_timestamps_stay_strings(tmp_path: Path) -> None:
    # YAML 1.1 would make this a datetime, and the example would no longer be JSON.
    variant = write_variant(
        tmp_path,
        "created_at: '2025-11-26T03:01:00.000000+00:00'",
        "created_at: 2025-11-26T03:01:00.000000+00:00",
    )
    loaded = Contract.load(variant)
    created_at = loaded.examples(INITIATED)[0].payload["created_at"]
    assert created_at == "2025-11-26T03:01:00.000000+00:00"


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        (
            "stream_id: {$ref: '#/components/schemas/StreamId'}",
            "stream_id: {$ref: '#/components/schemas/StreamId', minLength: 99}",
            "beside \\$ref",
        ),
        (
            "stream_version: {$ref: '#/components/schemas/StreamVersion'}",
            "stream_version: {$ref: '#/components/schemas/Nope'}",
            "no such element",
        ),
    ],
    ids=["ref_with_siblings", "dangling_ref"],
)
def test_a_bad_ref_is_refused(tmp_path: Path, old: str, new: str, problem: str) -> None:
    with pytest.raises(ContractLoadError, match=problem):
        Contract.load(write_variant(tmp_path, old, new))


def test_message_name_must_match_its_event_type_const(tmp_path: Path) -> None:
    variant = write_variant(tmp_path, "name: organization.created", "name: organization.created.v2")
    with pytest.raises(ContractLoadError, match="must equal the message name"):
        Contract.load(variant)


# ---- (d) the AsyncAPI parser accepts the document -------------------------------------


def run_asyncapi_validator(document: Path) -> subprocess.CompletedProcess[str]:
    """Run contracts/validate.mjs; fail (never skip) when its toolchain is missing."""
    node = shutil.which("node")
    if node is None:
        pytest.fail(f"node is not on PATH: install Node 20, then {NPM_HINT}")
    if not (CONTRACTS_DIR / "node_modules" / "@asyncapi" / "parser").is_dir():
        pytest.fail(f"contracts/node_modules is missing: {NPM_HINT}")
    return subprocess.run(
        [node, str(CONTRACTS_DIR / "validate.mjs"), str(document)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=REPO_ROOT,
    )


def test_asyncapi_parser_accepts_the_contract() -> None:
    result = run_asyncapi_validator(DEFAULT_CONTRACT_PATH)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    problems = [line for line in output.splitlines() if line.startswith(("error", "warning"))]
    assert problems == [], output
    assert "valid AsyncAPI 3.0.0, 15 messages" in result.stdout


def test_asyncapi_validator_rejects_an_invalid_example(tmp_path: Path) -> None:
    # Keeps the check above honest: the script must look at the examples too.
    variant = write_variant(tmp_path, "subdomain: acme-health", "subdomain: Acme_Health")
    result = run_asyncapi_validator(variant)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "example-invalid" in result.stdout
    assert "event_data.subdomain" in result.stdout


# ---- docs/events.md ------------------------------------------------------------------


def load_doc_generator() -> ModuleType:
    path = REPO_ROOT / "scripts" / "gen_events_doc.py"
    spec = importlib.util.spec_from_file_location("gen_events_doc", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_events_doc_is_up_to_date(contract: Contract) -> None:
    generator = load_doc_generator()
    expected = generator.render(contract)
    current = (REPO_ROOT / "docs" / "events.md").read_text(encoding="utf-8")
    assert current == expected, "docs/events.md is stale: run python scripts/gen_events_doc.py"


def test_events_doc_covers_every_event_type() -> None:
    page = (REPO_ROOT / "docs" / "events.md").read_text(encoding="utf-8")
    for event_type in events.ALL_EVENT_TYPES:
        assert f"\n## {event_type}\n" in page
