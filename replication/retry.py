"""What to do about an error: one table, error kind -> directive -> operator hint.

The model is supabase/etl's error kinds: an error is classified once, here, and its
user follows the directive. Three users, one table:

- the reader (:class:`~replication.reader.Reader`) retries a session that ended with an
  error under RETRY or WAIT, and raises a FATAL one;
- the agents (``pipeline.agents.effects.with_retries``) retry an effect under RETRY or
  WAIT, and under FATAL log it critical with the hint and keep retrying, so only the
  record's own stream waits for the fix (never the process, never a lost record);
- the CLI (``pipeline.cli_exit.exit_code``) exits with the row's ``exit_code``: 2 when the
  operator's configuration must change, 1 for a runtime failure.

The table is ordered, most specific kind first; an error matches the first row whose
kind it is an instance of (or whose ``when`` accepts it). An error of no listed kind is a
bug and is fatal: it is raised with its traceback instead of being retried forever with
a misleading hint.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import psycopg
from aiokafka.errors import (
    KafkaError,
    ProducerFenced,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)

from replication.errors import DeliveryError, ReaderSetupError, ServerError, SlotInUse, StreamClosed

EXIT_FAILURE: Final = 1  # a runtime failure: a service unreachable, a check failed
EXIT_CONFIG: Final = 2  # the configuration or the setup must change


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
    # The CLI's exit code when a command ends on this error.
    exit_code: int = EXIT_FAILURE
    # Matches an error of none of ``kinds`` too when this says so (errors told apart by
    # a field, such as Temporal's RPC status).
    when: Callable[[BaseException], bool] | None = None

    def matches(self, error: BaseException) -> bool:
        return isinstance(error, self.kinds) or (self.when is not None and self.when(error))


def _rpc_status(statuses: frozenset[str]) -> Callable[[BaseException], bool]:
    """Whether an error is a Temporal RPCError with one of ``statuses`` (by name).

    temporalio is looked up, not imported: an RPCError exists only once it is loaded, and
    the reader alone never loads it."""

    def check(error: BaseException) -> bool:
        service = sys.modules.get("temporalio.service")
        if service is None or not isinstance(error, service.RPCError):
            return False
        return str(error.status.name) in statuses

    return check


def _temporal_connect(error: BaseException) -> bool:
    # temporalio's Client.connect reports an unreachable server as a RuntimeError.
    return isinstance(error, RuntimeError) and "connect" in str(error).lower()


KAFKA_HINT = "check that the Kafka brokers in PIPELINE_KAFKA_BOOTSTRAP_SERVERS are up and reachable"
POSTGRES_HINT = "check that PostgreSQL in PIPELINE_DATABASE_URL is up and reachable"
TEMPORAL_HINT = "check that the Temporal frontend in PIPELINE_TEMPORAL_ADDRESS is up and reachable"
_TEMPORAL_TRANSIENT = frozenset(
    {
        "UNAVAILABLE",
        "DEADLINE_EXCEEDED",
        "RESOURCE_EXHAUSTED",
        "ABORTED",
        "CANCELLED",
        "INTERNAL",
        "UNKNOWN",
    }
)
_TEMPORAL_REFUSED = frozenset(
    {"PERMISSION_DENIED", "UNAUTHENTICATED", "NOT_FOUND", "FAILED_PRECONDITION"}
)

RULES: tuple[Rule, ...] = (
    Rule(
        (ReaderSetupError,),
        Directive.FATAL,
        "see the message: the setup must change",
        EXIT_CONFIG,
    ),
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
        EXIT_CONFIG,
    ),
    Rule((DeliveryError,), Directive.RETRY, KAFKA_HINT),
    Rule((KafkaError,), Directive.RETRY, KAFKA_HINT),
    Rule(
        (psycopg.errors.InsufficientPrivilege,),
        Directive.WAIT,
        "grant the role of the DSN what sql/roles.sql grants it",
        EXIT_CONFIG,
    ),
    Rule(
        (
            psycopg.errors.UndefinedTable,
            psycopg.errors.UndefinedColumn,
            psycopg.errors.UndefinedFunction,
        ),
        Directive.WAIT,
        "the database schema is behind the code: run `pipeline migrate`",
        EXIT_CONFIG,
    ),
    Rule((psycopg.Error, StreamClosed, ServerError), Directive.RETRY, POSTGRES_HINT),
    Rule((), Directive.RETRY, TEMPORAL_HINT, when=_rpc_status(_TEMPORAL_TRANSIENT)),
    Rule((), Directive.RETRY, TEMPORAL_HINT, when=_temporal_connect),
    Rule(
        (),
        Directive.WAIT,
        "Temporal refused the request: check PIPELINE_TEMPORAL_NAMESPACE, the TLS and API "
        "key settings, and the permissions of the pipeline's Temporal identity",
        EXIT_CONFIG,
        when=_rpc_status(_TEMPORAL_REFUSED),
    ),
    Rule(
        (OSError, TimeoutError),
        Directive.RETRY,
        "check the network to PostgreSQL, Kafka and Temporal",
    ),
)

UNKNOWN = Rule(
    (), Directive.FATAL, "an unexpected error (a bug): please report it with the traceback"
)


def classify(error: BaseException) -> Rule:
    """The first rule of :data:`RULES` whose kind ``error`` is; fatal if none."""
    for rule in RULES:
        if rule.matches(error):
            return rule
    return UNKNOWN


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
