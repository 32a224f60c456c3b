"""The reader's identity and transaction settings (no services)."""

from __future__ import annotations

import pytest

from pipeline.config import load_settings, reader_config
from pipeline.errors import ConfigError
from replication.producer import transactional_id
from replication.reader import application_name

BASE = {
    "PIPELINE_DATABASE_URL": "postgresql://u@db.example:5432/app",
    "PIPELINE_KAFKA_BOOTSTRAP_SERVERS": "kafka:9092",
    "PIPELINE_TEMPORAL_ADDRESS": "temporal:7233",
}


def test_application_name_names_the_instance() -> None:
    assert application_name("replica-7", env={}) == "pipeline-reader/replica-7"
    assert application_name("", env={"PIPELINE_INSTANCE_ID": "pipeline-1"}) == (
        "pipeline-reader/pipeline-1"
    )
    assert application_name("", env={}).startswith("pipeline-reader/")


def test_application_name_fits_postgresqls_63_bytes() -> None:
    assert len(application_name("x" * 100, env={}).encode()) <= 63


def test_the_transactional_id_is_stable_per_topic_and_slot() -> None:
    assert transactional_id("domain-events", "pipeline") == "pipeline-reader.domain-events.pipeline"
    assert transactional_id("a", "s1") != transactional_id("a", "s2")


def test_transactions_are_on_unless_switched_off() -> None:
    assert reader_config(load_settings(BASE)).transactional is True
    off = load_settings({**BASE, "PIPELINE_KAFKA_TRANSACTIONS": "false"})
    assert reader_config(off).transactional is False
    with pytest.raises(ConfigError, match="PIPELINE_KAFKA_TRANSACTIONS"):
        load_settings({**BASE, "PIPELINE_KAFKA_TRANSACTIONS": "maybe"})
