"""One retry table (replication.retry) for the reader, the agents and the CLI's exit codes:
each error kind maps to its directive, its operator hint and its exit code; the agents'
``with_retries`` follows it. No services."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import psycopg
import pytest
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError
from temporalio.service import RPCError, RPCStatusCode

from pipeline.agents import effects
from pipeline.cli_exit import EXIT_CONFIG, EXIT_FAILURE, exit_code
from pipeline.errors import ConfigError
from replication.errors import SlotInUse, WalLevelError
from replication.retry import RULES, UNKNOWN, Directive, classify


def rpc(status: RPCStatusCode) -> RPCError:
    return RPCError(f"temporal said {status.name}", status, b"")


@pytest.mark.parametrize(
    ("error", "directive", "hint", "code"),
    [
        # The agents' kinds.
        (rpc(RPCStatusCode.UNAVAILABLE), Directive.RETRY, "PIPELINE_TEMPORAL_ADDRESS", 1),
        (rpc(RPCStatusCode.DEADLINE_EXCEEDED), Directive.RETRY, "PIPELINE_TEMPORAL_ADDRESS", 1),
        (rpc(RPCStatusCode.INTERNAL), Directive.RETRY, "PIPELINE_TEMPORAL_ADDRESS", 1),
        (RuntimeError("Failed client connect: refused"), Directive.RETRY, "Temporal", 1),
        (rpc(RPCStatusCode.PERMISSION_DENIED), Directive.WAIT, "PIPELINE_TEMPORAL_NAMESPACE", 2),
        (rpc(RPCStatusCode.NOT_FOUND), Directive.WAIT, "PIPELINE_TEMPORAL_NAMESPACE", 2),
        (psycopg.errors.InsufficientPrivilege("denied"), Directive.WAIT, "sql/roles.sql", 2),
        (psycopg.errors.UndefinedTable("no table"), Directive.WAIT, "pipeline migrate", 2),
        (psycopg.OperationalError("refused"), Directive.RETRY, "PIPELINE_DATABASE_URL", 1),
        (ConnectionResetError(), Directive.RETRY, "network", 1),
        # The reader's kinds.
        (KafkaConnectionError(), Directive.RETRY, "PIPELINE_KAFKA_BOOTSTRAP_SERVERS", 1),
        (TopicAuthorizationFailedError(), Directive.WAIT, "Kafka principal", 2),
        (SlotInUse("pipeline", 7), Directive.WAIT, "another reader", 1),
        (WalLevelError("wal_level is replica", "set it"), Directive.FATAL, "setup", 2),
        # A bug: fatal, not retried forever under a misleading hint.
        (KeyError("x"), Directive.FATAL, "a bug", 1),
        (rpc(RPCStatusCode.INVALID_ARGUMENT), Directive.FATAL, "a bug", 1),
    ],
)
def test_each_kind_maps_to_its_directive_hint_and_exit_code(
    error: BaseException, directive: Directive, hint: str, code: int
) -> None:
    rule = classify(error)
    assert rule.directive is directive
    assert hint in rule.hint
    assert rule.exit_code == code
    assert exit_code(error) == code


def test_every_row_has_a_hint_and_a_cli_exit_code() -> None:
    for rule in (*RULES, UNKNOWN):
        assert rule.hint
        assert rule.exit_code in (EXIT_FAILURE, EXIT_CONFIG)


def test_a_configuration_error_exits_2() -> None:
    assert exit_code(ConfigError("PIPELINE_TOPIC: bad")) == EXIT_CONFIG


def failing(*errors: BaseException) -> tuple[Callable[[], Awaitable[str]], list[int]]:
    """An action failing with each of errors in turn, then succeeding; and its call count."""
    calls = [0]

    async def action() -> str:
        calls[0] += 1
        if calls[0] <= len(errors):
            raise errors[calls[0] - 1]
        return "done"

    return action, calls


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(effects, "retry_delay", lambda attempt: 0.0)


def test_an_outage_is_retried_with_a_warning_naming_the_setting(
    caplog: pytest.LogCaptureFixture,
) -> None:
    action, calls = failing(rpc(RPCStatusCode.UNAVAILABLE), psycopg.OperationalError("gone"))
    with caplog.at_level(logging.WARNING, logger=effects.log.name):
        result = asyncio.run(effects.with_retries("starter", "start x", action))
    assert (result, calls[0]) == ("done", 3)
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.WARNING]
    assert "PIPELINE_TEMPORAL_ADDRESS" in caplog.records[0].getMessage()
    assert "PIPELINE_DATABASE_URL" in caplog.records[1].getMessage()


def test_what_the_operator_must_fix_is_retried_with_an_error_and_the_hint(
    caplog: pytest.LogCaptureFixture,
) -> None:
    action, calls = failing(psycopg.errors.UndefinedTable("relation x does not exist"))
    with caplog.at_level(logging.WARNING, logger=effects.log.name):
        result = asyncio.run(effects.with_retries("projection", "apply", action))
    assert (result, calls[0]) == ("done", 2)
    (record,) = caplog.records
    assert record.levelno == logging.ERROR
    assert "pipeline migrate" in record.getMessage()


def test_a_bug_holds_its_stream_at_critical_and_the_process_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    action, calls = failing(KeyError("workflow_type"), KeyError("workflow_type"))
    with caplog.at_level(logging.WARNING, logger=effects.log.name):
        result = asyncio.run(effects.with_retries("starter", "start x", action))
    # Neither raised (the dispatcher would ack the record without its effect) nor the
    # process stopped (the reader and every other stream would stop with it): retried
    # until the fix is deployed, each failure critical, the traceback once.
    assert (result, calls[0]) == ("done", 3)
    assert [r.levelno for r in caplog.records] == [logging.CRITICAL, logging.CRITICAL]
    assert "this stream waits" in caplog.records[0].getMessage()
    assert "a bug" in caplog.records[0].getMessage()
    assert caplog.records[0].exc_info is not None
    assert caplog.records[1].exc_info is None


def test_cancellation_is_not_classified() -> None:
    action, calls = failing(asyncio.CancelledError())
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(effects.with_retries("starter", "start x", action))
    assert calls[0] == 1
