"""The pipeline's settings: read once at start-up and validated before any I/O.

Every problem is collected and reported at once, each naming the variable and where it
comes from in Kubernetes (the ConfigMap or the Secret of ``deploy/k8s/``), because an
operator fixing a crash-looping pod should not have to redeploy once per missing variable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pipeline import webauth
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
_NUMBERS = (
    "PIPELINE_TOPIC_PARTITIONS",
    "PIPELINE_TOPIC_REPLICATION_FACTOR",
    "PIPELINE_WEB_PORT",
    "PIPELINE_READY_MAX_LAG_BYTES",
)


@dataclass(frozen=True, slots=True)
class Settings:
    """Validated configuration of ``pipeline run`` / ``replay`` / ``status``."""

    database_url: str
    kafka_bootstrap_servers: str
    temporal_address: str
    temporal_namespace: str = "default"
    temporal_task_queue: str = "org-bootstrap"
    topic: str = "domain-events"
    topic_partitions: int = 8
    topic_replication_factor: int = 1
    dead_letter_topic: str = "domain-events-dlq"
    slot_name: str = "pipeline"
    publication: str = "pipeline_domain_events"
    consumer_group: str = "pipeline"
    initial_snapshot: bool = True
    pgoutput_binary: bool = True
    kafka_transactions: bool = True
    web_port: int = DEFAULT_WEB_PORT
    ready_max_lag_bytes: int = 64 * 1024 * 1024
    # How every Kafka client and Temporal client authenticates and encrypts.
    kafka_security: KafkaSecurity = PLAINTEXT
    temporal_security: TemporalSecurity = field(default_factory=TemporalSecurity)
    # The reader's own DSN (role pipeline_reader, sql/roles.sql); empty = database_url.
    reader_database_url: str = ""


def _where(name: str) -> str:
    return SOURCES.get(name, f"ConfigMap {CONFIGMAP}")


def _problem(name: str, message: str) -> str:
    return f"{name} ({_where(name)}): {message}"


def _check_dsn(name: str, value: str, problems: list[str]) -> None:
    parts = urlsplit(value)
    if parts.scheme not in {"postgres", "postgresql"} or not parts.hostname:
        problems.append(_problem(name, "must be a URL like postgresql://user:pass@host:5432/db"))
        return
    try:
        _ = parts.port
    except ValueError:
        problems.append(_problem(name, "has an invalid port"))
        return
    pooler = pooler_problem(value)
    if pooler is not None:
        problems.append(_problem(name, pooler))


def _check_host_ports(name: str, value: str, problems: list[str]) -> None:
    for item in value.split(","):
        match = _HOST_PORT.match(item.strip())
        if match is None or not 0 < int(match["port"]) < 65536:
            problems.append(_problem(name, f"{item.strip()!r} is not host:port"))


def _int_setting(env: Mapping[str, str], name: str, default: int, problems: list[str]) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        problems.append(_problem(name, f"must be a positive integer, got {raw!r}"))
        return default
    return int(raw)


def _port_setting(env: Mapping[str, str], name: str, default: int, problems: list[str]) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        problems.append(_problem(name, f"must be a TCP port between 1 and 65535, got {raw!r}"))
        return default
    return int(raw)


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


def _bool_setting(env: Mapping[str, str], name: str, default: bool, problems: list[str]) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    problems.append(_problem(name, f"must be true or false, got {raw!r}"))
    return default


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from the environment or raise ConfigError listing every problem."""
    env = os.environ if env is None else env
    problems: list[str] = []
    for name in REQUIRED:
        if not env.get(name, "").strip():
            problems.append(_problem(name, "is not set"))
    dsn = env.get("PIPELINE_DATABASE_URL", "").strip()
    if dsn:
        _check_dsn("PIPELINE_DATABASE_URL", dsn, problems)
    kafka = env.get("PIPELINE_KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if kafka:
        _check_host_ports("PIPELINE_KAFKA_BOOTSTRAP_SERVERS", kafka, problems)
    temporal = env.get("PIPELINE_TEMPORAL_ADDRESS", "").strip()
    if temporal:
        _check_host_ports("PIPELINE_TEMPORAL_ADDRESS", temporal, problems)
    names = {
        "PIPELINE_TOPIC": "domain-events",
        "PIPELINE_DEAD_LETTER_TOPIC": "domain-events-dlq",
        "PIPELINE_SLOT_NAME": "pipeline",
        "PIPELINE_PUBLICATION": "pipeline_domain_events",
        "PIPELINE_CONSUMER_GROUP": "pipeline",
        "PIPELINE_TEMPORAL_NAMESPACE": "default",
        "PIPELINE_TEMPORAL_TASK_QUEUE": "org-bootstrap",
    }
    values = {name: env.get(name, "").strip() or default for name, default in names.items()}
    for name, value in values.items():
        if not _NAME.match(value):
            problems.append(_problem(name, f"{value!r} is not a valid name"))
    slot = values["PIPELINE_SLOT_NAME"]
    if not re.fullmatch(r"[a-z0-9_]{1,63}", slot):
        problems.append(
            _problem("PIPELINE_SLOT_NAME", "slot names use lower-case letters, digits and _")
        )
    partitions = _int_setting(env, "PIPELINE_TOPIC_PARTITIONS", 8, problems)
    replication_factor = _int_setting(env, "PIPELINE_TOPIC_REPLICATION_FACTOR", 1, problems)
    web_port = _port_setting(env, "PIPELINE_WEB_PORT", DEFAULT_WEB_PORT, problems)
    ready_lag = _int_setting(env, "PIPELINE_READY_MAX_LAG_BYTES", 64 * 1024 * 1024, problems)
    snapshot = _bool_setting(env, "PIPELINE_INITIAL_SNAPSHOT", True, problems)
    binary = _bool_setting(env, "PIPELINE_PGOUTPUT_BINARY", True, problems)
    transactions = _bool_setting(env, "PIPELINE_KAFKA_TRANSACTIONS", True, problems)
    problems += placeholder_problems(env, [*REQUIRED, *names, *_NUMBERS])
    # Kafka SASL/TLS and Temporal TLS: every file is checked (exists, PEM) here.
    secure: list[tuple[str, str]] = []
    kafka_security = kafka_security_from_env(env, secure)
    temporal_security = temporal_security_from_env(env, secure)
    problems.extend(_problem(name, message) for name, message in secure)
    problems.extend(webauth.problems(env))  # PIPELINE_WEB_AUTH_* (pipeline/webauth.py)
    reader_dsn = env.get("PIPELINE_READER_DATABASE_URL", "").strip()
    if reader_dsn:
        _check_dsn("PIPELINE_READER_DATABASE_URL", reader_dsn, problems)
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))
    return Settings(
        database_url=dsn,
        kafka_bootstrap_servers=kafka,
        temporal_address=temporal,
        temporal_namespace=values["PIPELINE_TEMPORAL_NAMESPACE"],
        temporal_task_queue=values["PIPELINE_TEMPORAL_TASK_QUEUE"],
        topic=values["PIPELINE_TOPIC"],
        topic_partitions=partitions,
        topic_replication_factor=replication_factor,
        dead_letter_topic=values["PIPELINE_DEAD_LETTER_TOPIC"],
        slot_name=slot,
        publication=values["PIPELINE_PUBLICATION"],
        consumer_group=values["PIPELINE_CONSUMER_GROUP"],
        initial_snapshot=snapshot,
        pgoutput_binary=binary,
        kafka_transactions=transactions,
        web_port=web_port,
        ready_max_lag_bytes=ready_lag,
        kafka_security=kafka_security,
        temporal_security=temporal_security,
        reader_database_url=reader_dsn,
    )


def database_url_from_env(env: Mapping[str, str] | None = None) -> str:
    """Just the DSN (for ``pipeline migrate``/``emit``), validated the same way."""
    env = os.environ if env is None else env
    dsn = env.get("PIPELINE_DATABASE_URL", "").strip()
    problems: list[str] = []
    if not dsn:
        problems.append(_problem("PIPELINE_DATABASE_URL", "is not set"))
    else:
        _check_dsn("PIPELINE_DATABASE_URL", dsn, problems)
    problems += placeholder_problems({"PIPELINE_DATABASE_URL": dsn})
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))
    return dsn


def reader_config(settings: Settings) -> ReaderConfig:
    """The replication reader's part of the settings."""
    from replication.reader import ReaderConfig

    return ReaderConfig(
        dsn=settings.reader_database_url or settings.database_url,
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
