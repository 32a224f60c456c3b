"""The contract document itself: loading it (contracts/organization-bootstrap-events.yaml,
pipeline/contract_loader.py), the AsyncAPI toolchain's verdict on it, and docs/events.md
generated from it. What it says about events is tested in test_contract.py."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

from pipeline import events
from pipeline.contract import (
    CONTRACT_PATH_ENV,
    DEFAULT_CONTRACT_PATH,
    Contract,
    ContractLoadError,
    contract_path,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
CONTRACTS_DIR = REPO_ROOT / "contracts"
NPM_HINT = "run `npm ci --prefix contracts` (needs Node 20 and the npm registry)"
INITIATED = events.BOOTSTRAP_INITIATED


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
