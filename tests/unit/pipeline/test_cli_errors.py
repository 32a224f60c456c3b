"""Issue 15 item 6: every error a careless user can make ends in one or two lines naming
the problem and the fix, no traceback; exit 2 for configuration/usage, 1 for runtime.

Each case runs the installed ``pipeline`` command as a subprocess, as a user would. The
unreachable services are a closed local port: no service is needed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PIPELINE = str(Path(sys.executable).parent / "pipeline")
CLOSED = "127.0.0.1:9"  # discard port: nothing listens there
BASE = {
    "PIPELINE_DATABASE_URL": "postgresql://postgres@127.0.0.1:9/pipeline",
    "PIPELINE_KAFKA_BOOTSTRAP_SERVERS": CLOSED,
    "PIPELINE_TEMPORAL_ADDRESS": CLOSED,
}


def pipeline(
    *args: str, env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    return subprocess.run(
        [PIPELINE, *args],
        env={**clean, **BASE, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def emit_bootstrap(*extra: str, subdomain: str = "acme") -> subprocess.CompletedProcess[str]:
    """``pipeline emit bootstrap`` with a valid request, plus extra arguments."""
    return pipeline(
        "emit", "bootstrap", "--name", "Acme", "--subdomain", subdomain,
        "--admin", "a@acme.test", *extra,
    )  # fmt: skip


def assert_clear(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)


def test_web_port_out_of_range_is_a_configuration_error() -> None:
    result = pipeline("check", env={"PIPELINE_WEB_PORT": "70000"})
    assert_clear(result, 2, "PIPELINE_WEB_PORT", "between 1 and 65535", "'70000'")


def test_a_placeholder_left_in_the_secret_is_a_configuration_error() -> None:
    env = {"PIPELINE_DATABASE_URL": "postgresql://pipeline:replace-me@db.example.com:5432/app"}
    assert_clear(pipeline("run", env=env), 2, "PIPELINE_DATABASE_URL", "placeholder")


def test_emit_with_an_org_id_that_is_not_a_uuid_is_a_usage_error() -> None:
    result = emit_bootstrap("--org-id", "not-a-uuid")
    assert_clear(result, 2, "--org-id", "'not-a-uuid' is not a UUID")


def test_emit_with_an_unknown_signature_is_a_usage_error() -> None:
    result = emit_bootstrap("--signature", "bogus")
    assert_clear(result, 2, "--signature", "bogus")
    assert "stream" in result.stderr and "aggregate" in result.stderr


def test_emit_refuses_an_event_the_contract_rejects_before_connecting() -> None:
    # The database URL is a closed port: the refusal comes before any connection.
    result = emit_bootstrap(subdomain="Not A Label!")
    assert_clear(result, 2, "not emitted", "event_data.subdomain", "nothing was written")


def test_emit_with_the_database_down_is_a_runtime_failure() -> None:
    result = emit_bootstrap()
    assert_clear(result, 1, "emit failed", "PIPELINE_DATABASE_URL")


@pytest.mark.parametrize("command", ["run", "reader", "status"])
def test_kafka_unreachable_is_a_runtime_failure_naming_the_servers(command: str) -> None:
    result = pipeline(command)
    assert_clear(result, 1, f"Kafka is unreachable at {CLOSED}", "PIPELINE_KAFKA_BOOTSTRAP_SERVERS")


def test_replay_with_kafka_unreachable_is_a_runtime_failure() -> None:
    result = pipeline("replay", "--from-lsn", "0/0")
    assert_clear(result, 1, f"Kafka is unreachable at {CLOSED}", "PIPELINE_KAFKA_BOOTSTRAP_SERVERS")


def test_status_says_which_services_it_could_not_read() -> None:
    result = pipeline("status")
    assert_clear(
        result,
        1,
        "postgres unavailable: PostgreSQL is unreachable",
        "PIPELINE_DATABASE_URL",
        f"kafka unavailable: Kafka is unreachable at {CLOSED}",
    )
    assert len(result.stderr.strip().splitlines()) == 2, result.stderr


def test_worker_with_temporal_unreachable_is_a_runtime_failure() -> None:
    env = {
        "PIPELINE_DNS_PROVIDER": "local",
        "PIPELINE_EMAIL_PROVIDER": "local",
        "PIPELINE_INVITATION_KEY": "a-test-only-invitation-key-of-at-least-32-bytes",
    }
    result = pipeline("worker", env=env)
    # Under load the connect may time out instead of being refused: same message.
    assert_clear(result, 1, f"Temporal is unreachable at {CLOSED}", "PIPELINE_TEMPORAL_ADDRESS")


def test_replay_with_to_lsn_below_from_lsn_is_a_usage_error() -> None:
    result = pipeline("replay", "--from-lsn", "0/200", "--to-lsn", "0/100")
    assert_clear(result, 2, "--to-lsn 0/100 is below --from-lsn 0/200")


@pytest.mark.parametrize("command", ["run", "reader", "worker"])
def test_an_unknown_event_loop_is_a_configuration_error(command: str) -> None:
    env = {"PIPELINE_EVENT_LOOP": "trio", "PIPELINE_INVITATION_KEY": "k" * 40}
    result = pipeline(command, env=env)
    # Listed with the other problems of the settings, with where the variable belongs.
    assert_clear(
        result,
        2,
        "PIPELINE_EVENT_LOOP",
        "must be one of uvloop, asyncio (default uvloop), got 'trio'",
    )
