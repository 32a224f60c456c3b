"""The pipeline's settings: read once at start-up and validated before any I/O.

Every problem is collected and reported at once, each naming the variable and where it
comes from in Kubernetes (the ConfigMap or the Secret of ``deploy/k8s/``), because an
operator fixing a crash-looping pod should not have to redeploy once per missing variable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, SecretStr

from pipeline import eventloop, webauth
from pipeline.envsettings import EnvSettings, flag, read, variable
from pipeline.errors import ConfigError
from pipeline.security import SOURCES as SECURITY_SOURCES
from pipeline.security import (
    TemporalSecurity,
    kafka_security_from_env,
    temporal_security_from_env,
)
from replication.dsn import pooler_problem
from replication.kafka_client import PLAINTEXT, KafkaSecurity

if TYPE_CHECKING:
    from replication.reader import ReaderConfig

CONFIGMAP = "pipeline-config"
SECRET = "pipeline-secrets"

# Where each variable lives in Kubernetes; a secret never appears in a ConfigMap.
SOURCES: dict[str, str] = {
    "PIPELINE_DATABASE_URL": f"Secret {SECRET}",
    "PIPELINE_READER_DATABASE_URL": f"Secret {SECRET}",
    "PIPELINE_KAFKA_BOOTSTRAP_SERVERS": f"ConfigMap {CONFIGMAP}",
    "PIPELINE_TEMPORAL_ADDRESS": f"ConfigMap {CONFIGMAP}",
    "PIPELINE_TEMPORAL_NAMESPACE": f"ConfigMap {CONFIGMAP}",
    **SECURITY_SOURCES,  # Kafka SASL/TLS, Temporal TLS/API key (pipeline.security)
}
REQUIRED = (
    "PIPELINE_DATABASE_URL",
    "PIPELINE_KAFKA_BOOTSTRAP_SERVERS",
    "PIPELINE_TEMPORAL_ADDRESS",
)

_HOST_PORT = re.compile(r"^(?P<host>[A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\]):(?P<port>\d{1,5})$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,248}$", re.I)
DEFAULT_WEB_PORT = 6066


def _dsn(value: object) -> object:
    """A PostgreSQL URL, no pooler in front (the reader needs logical replication)."""
    raw = value.get_secret_value() if isinstance(value, SecretStr) else value
    if not isinstance(raw, str):
        return value
    parts = urlsplit(raw)
    if parts.scheme not in {"postgres", "postgresql"} or not parts.hostname:
        raise ValueError("must be a URL like postgresql://user:pass@host:5432/db")
    try:
        _ = parts.port
    except ValueError:
        raise ValueError("has an invalid port") from None
    pooler = pooler_problem(raw)
    if pooler is not None:
        raise ValueError(pooler)
    return value


def _host_ports(value: object) -> object:
    if isinstance(value, str):
        bad = [
            item.strip()
            for item in value.split(",")
            if (match := _HOST_PORT.match(item.strip())) is None
            or not 0 < int(match["port"]) < 65536
        ]
        if bad:
            raise ValueError("; ".join(f"{item!r} is not host:port" for item in bad))
    return value


def _positive(value: object) -> object:
    if isinstance(value, str) and (not value.isdigit() or int(value) < 1):
        raise ValueError(f"must be a positive integer, got {value!r}")
    return value


def _port(value: object) -> object:
    if isinstance(value, str) and (not value.isdigit() or not 0 < int(value) < 65536):
        raise ValueError(f"must be a TCP port between 1 and 65535, got {value!r}")
    return value


def _name(value: object) -> object:
    if isinstance(value, str) and not _NAME.match(value):
        raise ValueError(f"{value!r} is not a valid name")
    return value


def _slot(value: object) -> object:
    _name(value)
    if isinstance(value, str) and not re.fullmatch(r"[a-z0-9_]{1,63}", value):
        raise ValueError("slot names use lower-case letters, digits and _")
    return value


Dsn = Annotated[SecretStr, BeforeValidator(_dsn)]
HostPorts = Annotated[str, BeforeValidator(_host_ports)]
Name = Annotated[str, BeforeValidator(_name)]
Positive = Annotated[int, BeforeValidator(_positive)]
Flag = Annotated[bool, BeforeValidator(flag)]


class Settings(EnvSettings):
    """Validated configuration of ``pipeline run`` / ``replay`` / ``status``.

    Each field is read from the variable its alias names. The DSNs, Kafka's SASL and key
    passwords and Temporal's API key are ``SecretStr``: ``repr``, dumps and logs show
    ``**********``; the code that connects calls ``.get_secret_value()``.
    """

    database_url: Dsn = Field(validation_alias="PIPELINE_DATABASE_URL")
    kafka_bootstrap_servers: HostPorts = Field(validation_alias="PIPELINE_KAFKA_BOOTSTRAP_SERVERS")
    temporal_address: HostPorts = Field(validation_alias="PIPELINE_TEMPORAL_ADDRESS")
    temporal_namespace: Name = Field("default", validation_alias="PIPELINE_TEMPORAL_NAMESPACE")
    temporal_task_queue: Name = Field(
        "org-bootstrap", validation_alias="PIPELINE_TEMPORAL_TASK_QUEUE"
    )
    topic: Name = Field("domain-events", validation_alias="PIPELINE_TOPIC")
    topic_partitions: Positive = Field(8, validation_alias="PIPELINE_TOPIC_PARTITIONS")
    topic_replication_factor: Positive = Field(
        1, validation_alias="PIPELINE_TOPIC_REPLICATION_FACTOR"
    )
    dead_letter_topic: Name = Field(
        "domain-events-dlq", validation_alias="PIPELINE_DEAD_LETTER_TOPIC"
    )
    slot_name: Annotated[str, BeforeValidator(_slot)] = Field(
        "pipeline", validation_alias="PIPELINE_SLOT_NAME"
    )
    publication: Name = Field("pipeline_domain_events", validation_alias="PIPELINE_PUBLICATION")
    consumer_group: Name = Field("pipeline", validation_alias="PIPELINE_CONSUMER_GROUP")
    initial_snapshot: Flag = Field(True, validation_alias="PIPELINE_INITIAL_SNAPSHOT")
    pgoutput_binary: Flag = Field(True, validation_alias="PIPELINE_PGOUTPUT_BINARY")
    kafka_transactions: Flag = Field(True, validation_alias="PIPELINE_KAFKA_TRANSACTIONS")
    web_port: Annotated[int, BeforeValidator(_port)] = Field(
        DEFAULT_WEB_PORT, validation_alias="PIPELINE_WEB_PORT"
    )
    ready_max_lag_bytes: Positive = Field(
        64 * 1024 * 1024, validation_alias="PIPELINE_READY_MAX_LAG_BYTES"
    )
    # Records the consumer edge holds taken and not acked before it takes no more
    # (pipeline.consumer.edge.EdgeLimits.max_unacked): bounds its memory while a start
    # waits on Temporal, about 1 KB a record.
    max_unacked_records: Positive = Field(20_000, validation_alias="PIPELINE_MAX_UNACKED_RECORDS")
    # How every Kafka client and Temporal client authenticates and encrypts (built by
    # pipeline.security from their own variables). Their passwords and API key are
    # SecretStr like the DSNs: model_dump / model_dump_json show them as **********.
    kafka_security: KafkaSecurity = Field(PLAINTEXT)
    temporal_security: TemporalSecurity = Field(default_factory=TemporalSecurity)
    # The reader's own DSN (role pipeline_reader, sql/roles.sql); unset = database_url.
    reader_database_url: Dsn | None = Field(None, validation_alias="PIPELINE_READER_DATABASE_URL")

    @property
    def reader_dsn(self) -> SecretStr:
        """The DSN the replication reader connects with."""
        return self.reader_database_url or self.database_url


def _where(name: str) -> str:
    return SOURCES.get(name, f"ConfigMap {CONFIGMAP}")


def _problem(name: str, message: str) -> str:
    return f"{name} ({_where(name)}): {message}"


# The placeholders of deploy/k8s/secret.yaml and configmap.yaml: a value still holding one
# was never filled in, and would fail later and further from its cause.
_PLACEHOLDER = re.compile(r"replace-(me|with)", re.I)


def placeholder_problems(env: Mapping[str, str], names: Iterable[str] | None = None) -> list[str]:
    """The variables (of names, default every PIPELINE_* one) still holding a placeholder."""
    chosen = sorted(env if names is None else set(names) & set(env))
    return [
        _problem(name, "still holds a placeholder (replace-me...): set the real value")
        for name in chosen
        if name.startswith("PIPELINE_") and _PLACEHOLDER.search(env[name])
    ]


_SECURITY_FIELDS = frozenset({"kafka_security", "temporal_security"})
# The variables Settings reads itself (the security ones are pipeline.security's).
VARIABLES = tuple(
    variable(Settings, name) for name in Settings.model_fields if name not in _SECURITY_FIELDS
)


def _raise(problems: list[str]) -> None:
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from the environment or raise ConfigError listing every problem."""
    env = os.environ if env is None else env
    # Kafka SASL/TLS and Temporal TLS: every file is checked (exists, PEM) here.
    secure: list[tuple[str, str]] = []
    kafka_security = kafka_security_from_env(env, secure)
    temporal_security = temporal_security_from_env(env, secure)
    settings, invalid = read(
        Settings, env, kafka_security=kafka_security, temporal_security=temporal_security
    )
    problems = [_problem(name, message) for name, message in invalid]
    problems += placeholder_problems(env, VARIABLES)
    problems.extend(_problem(name, message) for name, message in secure)
    problems.extend(webauth.problems(env))  # PIPELINE_WEB_AUTH_* (pipeline/webauth.py)
    # PIPELINE_EVENT_LOOP (pipeline/eventloop.py)
    problems.extend(_problem(name, message) for name, message in eventloop.problems(env))
    _raise(problems)
    assert settings is not None
    return settings


class _Database(EnvSettings):
    database_url: Dsn = Field(validation_alias="PIPELINE_DATABASE_URL")


def database_url_from_env(env: Mapping[str, str] | None = None) -> str:
    """Just the DSN (for ``pipeline migrate``/``emit``), validated the same way; the value
    to connect with."""
    env = os.environ if env is None else env
    found, invalid = read(_Database, env)
    problems = [_problem(name, message) for name, message in invalid]
    problems += placeholder_problems(env, ["PIPELINE_DATABASE_URL"])
    _raise(problems)
    assert found is not None
    return found.database_url.get_secret_value()


def reader_config(settings: Settings) -> ReaderConfig:
    """The replication reader's part of the settings."""
    from replication.reader import ReaderConfig

    return ReaderConfig(
        dsn=settings.reader_dsn.get_secret_value(),
        kafka_bootstrap=settings.kafka_bootstrap_servers,
        topic=settings.topic,
        partitions=settings.topic_partitions,
        replication_factor=settings.topic_replication_factor,
        slot=settings.slot_name,
        publication=settings.publication,
        dead_letter_topic=settings.dead_letter_topic,
        initial_snapshot=settings.initial_snapshot,
        binary=settings.pgoutput_binary,
        transactional=settings.kafka_transactions,
        kafka_security=settings.kafka_security,
    )
