"""The reader's wait after CONCURRENT_TRANSACTIONS: 2 ms, not aiokafka's 20 ms.

The broker refuses to add a partition to a new transaction while it still writes the
previous one's commit markers; the reader, which commits whenever it has caught up, meets
that after most commits. These tests drive aiokafka's own response handler, so an aiokafka
that renames or drops the setting fails here rather than silently bringing the 20 ms back.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from aiokafka.errors import ConcurrentTransactions, NoError
from aiokafka.producer import sender as aiokafka_sender
from aiokafka.structs import TopicPartition

from replication.producer import (
    CONCURRENT_TRANSACTIONS_BACKOFF_S,
    EventProducer,
    shorten_concurrent_transactions_backoff,
)


def _handler(txn_partitions: set[TopicPartition]) -> aiokafka_sender.AddPartitionsToTxnHandler:
    added: list[TopicPartition] = []
    txn_manager = SimpleNamespace(
        txn_partitions=txn_partitions, partition_added=added.append, transactional_id="t"
    )
    fake_sender = SimpleNamespace(_txn_manager=txn_manager, _retry_backoff=0.1)
    return aiokafka_sender.AddPartitionsToTxnHandler(fake_sender, [TopicPartition("events", 3)])


def _refused() -> SimpleNamespace:
    return SimpleNamespace(errors=[("events", [(3, ConcurrentTransactions.errno)])])


@pytest.fixture
def aiokafka_default() -> object:
    before = aiokafka_sender.BACKOFF_OVERRIDE
    aiokafka_sender.BACKOFF_OVERRIDE = 0.02  # aiokafka's own value
    yield before
    aiokafka_sender.BACKOFF_OVERRIDE = before


def test_aiokafka_waits_20_ms_after_concurrent_transactions_unless_told_otherwise(
    aiokafka_default: object,
) -> None:
    assert _handler(set()).handle_response(_refused()) == 0.02


async def test_a_transactional_reader_producer_waits_2_ms(aiokafka_default: object) -> None:
    EventProducer("localhost:1", "events", lambda positions, error: None, transactional_id="r")
    assert _handler(set()).handle_response(_refused()) == CONCURRENT_TRANSACTIONS_BACKOFF_S
    assert CONCURRENT_TRANSACTIONS_BACKOFF_S == 0.002
    # Other waits stay aiokafka's: a refusal inside a transaction that already holds a
    # partition is not the marker race, and keeps the 100 ms retry backoff.
    assert _handler({TopicPartition("events", 1)}).handle_response(_refused()) == 0.1
    ok = SimpleNamespace(errors=[("events", [(3, NoError.errno)])])
    assert _handler(set()).handle_response(ok) is None


async def test_an_idempotent_only_producer_leaves_aiokafka_alone(aiokafka_default: object) -> None:
    EventProducer("localhost:1", "events", lambda positions, error: None)
    assert aiokafka_sender.BACKOFF_OVERRIDE == 0.02


def test_an_aiokafka_without_the_setting_gets_a_warning_not_a_crash(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delattr(aiokafka_sender, "BACKOFF_OVERRIDE")
    shorten_concurrent_transactions_backoff()
    assert not hasattr(aiokafka_sender, "BACKOFF_OVERRIDE")
    assert "no BACKOFF_OVERRIDE" in caplog.text
