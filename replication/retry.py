"""What the reader does about an error: one table, error kind -> directive -> operator hint.

The model is supabase/etl's error kinds: a session that ends with an error is classified
once, here, and :class:`~replication.reader.Reader` only follows the directive. The
table is ordered, most specific kind first; an error matches the first row whose kind
it is an instance of. An error of no listed kind is a bug and is fatal: it is raised
with its traceback instead of being retried forever with a misleading hint.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import psycopg
from aiokafka.errors import (
    KafkaError,
    ProducerFenced,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)

from replication.errors import DeliveryError, ReaderSetupError, ServerError, SlotInUse, StreamClosed


class Directive(enum.Enum):
    """What the reader does next."""

    RETRY = "retry"  # reconnect after a growing delay (retry_min doubling to retry_max)
    WAIT = "wait"  # poll at a steady pace: another process or the operator has to act
    FATAL = "fatal"  # stop and report: retrying cannot fix it


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of the table."""

    kinds: tuple[type[BaseException], ...]
    directive: Directive
    hint: str


KAFKA_HINT = "check that the Kafka brokers in PIPELINE_KAFKA_BOOTSTRAP_SERVERS are up and reachable"

RULES: tuple[Rule, ...] = (
    Rule((ReaderSetupError,), Directive.FATAL, "see the message: the setup must change"),
    Rule(
        (SlotInUse,),
        Directive.WAIT,
        "another reader holds the slot; this one takes over when it stops",
    ),
    Rule(
        (ProducerFenced,),
        Directive.WAIT,
        "another reader took over the slot and its Kafka transactions; this one waits",
    ),
    Rule(
        (TopicAuthorizationFailedError, TransactionalIdAuthorizationFailed),
        Directive.WAIT,
        "grant the reader's Kafka principal write access to the topics and its "
        "transactional id (pipeline-reader.<topic>.<slot>)",
    ),
    Rule((DeliveryError,), Directive.RETRY, KAFKA_HINT),
    Rule((KafkaError,), Directive.RETRY, KAFKA_HINT),
    Rule(
        (psycopg.Error, StreamClosed, ServerError),
        Directive.RETRY,
        "check that PostgreSQL in PIPELINE_DATABASE_URL is up and reachable",
    ),
    Rule((OSError, TimeoutError), Directive.RETRY, "check the network to PostgreSQL and Kafka"),
)

_UNKNOWN = Rule((), Directive.FATAL, "an unexpected error: please report it with the traceback")


def classify(error: BaseException) -> Rule:
    """The first rule of :data:`RULES` whose kind ``error`` is; fatal if none."""
    for rule in RULES:
        if isinstance(error, rule.kinds):
            return rule
    return _UNKNOWN


@dataclass(slots=True)
class Backoff:
    """The delay before the next attempt: doubles per failed RETRY, reset by a WAIT or
    by a session that got going (call :meth:`reset`)."""

    minimum: float
    maximum: float
    wait_interval: float = 1.0
    _next: float = 0.0

    def __post_init__(self) -> None:
        self._next = self.minimum

    def reset(self) -> None:
        self._next = self.minimum

    def delay(self, directive: Directive) -> float:
        """Seconds to wait before the next attempt under ``directive`` (not FATAL)."""
        if directive is Directive.WAIT:
            self._next = self.minimum
            return self.wait_interval
        if directive is Directive.FATAL:
            raise ValueError("a fatal error has no next attempt")
        delay = self._next
        self._next = min(self._next * 2, self.maximum)
        return delay
