"""The reader's error table (replication.retry): kind -> directive -> hint, no services."""

from __future__ import annotations

import psycopg
import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    NodeNotReadyError,
    ProducerFenced,
    TopicAuthorizationFailedError,
)

from replication.errors import (
    DecodeError,
    DeliveryError,
    PoolerError,
    ServerError,
    SlotInUse,
    StreamClosed,
    TrackerError,
    WalLevelError,
)
from replication.retry import Backoff, Directive, classify


@pytest.mark.parametrize(
    ("error", "directive"),
    [
        # A broker outage at session start (ensure_topic, the producer's start) is retried:
        # it used to escape Reader.run and take `pipeline run` down.
        (KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 1)]"), Directive.RETRY),
        (NodeNotReadyError("node 1"), Directive.RETRY),
        (KafkaTimeoutError(), Directive.RETRY),
        (DeliveryError("Kafka did not accept the event"), Directive.RETRY),
        (psycopg.OperationalError("connection refused"), Directive.RETRY),
        (StreamClosed("the server ended the replication stream"), Directive.RETRY),
        (ServerError("terminating connection", "57P01"), Directive.RETRY),
        (ConnectionResetError(), Directive.RETRY),
        (TimeoutError(), Directive.RETRY),
        (SlotInUse("pipeline", 42), Directive.WAIT),
        (ProducerFenced(), Directive.WAIT),
        (TopicAuthorizationFailedError(), Directive.WAIT),
        (PoolerError("a pooler", "use the direct host"), Directive.FATAL),
        (WalLevelError("wal_level is replica", "set it"), Directive.FATAL),
        # Bugs are not retried forever under a misleading hint.
        (TrackerError("duplicate ack"), Directive.FATAL),
        (DecodeError("bad frame"), Directive.FATAL),
        (KeyError("x"), Directive.FATAL),
    ],
)
def test_each_error_kind_has_its_directive(error: BaseException, directive: Directive) -> None:
    rule = classify(error)
    assert rule.directive is directive
    assert rule.hint


def test_kafka_errors_name_the_setting_to_check() -> None:
    assert "PIPELINE_KAFKA_BOOTSTRAP_SERVERS" in classify(KafkaConnectionError()).hint
    assert "PIPELINE_DATABASE_URL" in classify(psycopg.OperationalError()).hint


def test_the_fenced_rule_comes_before_the_general_kafka_rule() -> None:
    # ProducerFenced is a KafkaError: the more specific row must win.
    assert classify(ProducerFenced()).directive is Directive.WAIT
    assert "took over" in classify(ProducerFenced()).hint


def test_backoff_doubles_up_to_the_maximum_and_resets() -> None:
    backoff = Backoff(0.5, 3.0)
    assert [backoff.delay(Directive.RETRY) for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.delay(Directive.RETRY) == 0.5


def test_a_wait_polls_steadily_and_starts_the_retries_over() -> None:
    backoff = Backoff(0.5, 8.0, wait_interval=1.0)
    backoff.delay(Directive.RETRY)
    backoff.delay(Directive.RETRY)
    assert backoff.delay(Directive.WAIT) == 1.0
    assert backoff.delay(Directive.WAIT) == 1.0
    assert backoff.delay(Directive.RETRY) == 0.5


def test_a_fatal_error_has_no_next_attempt() -> None:
    with pytest.raises(ValueError):
        Backoff(0.5, 1.0).delay(Directive.FATAL)
