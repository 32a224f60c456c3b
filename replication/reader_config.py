"""What a reader is given (:class:`ReaderConfig`, built from pipeline.config.Settings by
the caller) and what it counts (:class:`ReaderStats`, read by pipeline.metrics and the
readiness check); the START_REPLICATION command a config asks for."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from replication.kafka_client import PLAINTEXT, KafkaSecurity
from replication.lsn import LSN, Position


@dataclass(frozen=True, slots=True)
class ReaderConfig:
    """What the reader needs; built from pipeline.config.Settings by the caller."""

    dsn: str
    kafka_bootstrap: str
    topic: str = "domain-events"
    partitions: int = 8
    replication_factor: int = 1
    slot: str = "pipeline"
    publication: str = "pipeline_domain_events"
    dead_letter_topic: str = "domain-events-dlq"
    initial_snapshot: bool = True
    status_interval: float = 1.0
    # While the reader is behind (its socket never empty, so never idle), its Kafka
    # transaction is still committed at least this often: consumers read committed only,
    # so a record is visible to them from its transaction's commit. It used to be
    # status_interval: on a busy machine a steady 220 events/s never left the socket
    # empty, and records waited up to a second for the commit (docs/benchmarks.md).
    commit_interval: float = 0.1
    max_in_flight: int = 50_000
    # While the reader is behind (its socket never empty), Kafka batches are held back up
    # to this long or until they fill (replication.batcher): fewer, larger batches. Was
    # 0.05: under a steady 220 events/s on a busy machine the reader is often "behind",
    # and commit -> Kafka append was 13-56 ms p50; 0.005: 11 ms, and a 100k backlog still
    # drains at 48k events/s (docs/benchmarks.md, issue 17 section).
    batch_linger: float = 0.005
    retry_min: float = 0.5
    retry_max: float = 15.0
    # pgoutput's binary mode (PostgreSQL 14+): columns in their types' send formats, which
    # the walsender produces with less CPU than text output (the drain's ceiling).
    binary: bool = True
    # Names this reader in application_name (pipeline-reader/<instance>); empty: the
    # PIPELINE_INSTANCE_ID variable, else host-pid (replication.reader.application_name).
    instance_id: str = ""
    # Kafka transactions: a frozen former reader is fenced, consumers read committed only,
    # and a restarted reader's resume positions are exact (DESIGN invariants 6 and 8).
    # Off: an idempotent producer only (benchmarks compare the two).
    transactional: bool = True
    # SASL / TLS of the reader's Kafka clients (replication.kafka_client).
    kafka_security: KafkaSecurity = PLAINTEXT


# The first PostgreSQL version whose pgoutput accepts ``binary 'true'``.
BINARY_MIN_SERVER_VERSION = 140000


def start_replication_command(config: ReaderConfig, server_version: int) -> tuple[str, bool]:
    """The START_REPLICATION command for this config and server, and whether it asks for
    binary columns (only where the server supports it; older servers get text)."""
    binary = config.binary and server_version >= BINARY_MIN_SERVER_VERSION
    options = f"proto_version '1', publication_names '{config.publication}'"
    if binary:
        options += ", binary 'true'"
    return f"START_REPLICATION SLOT {config.slot} LOGICAL 0/0 ({options})", binary


@dataclass(slots=True)
class ReaderStats:
    """Counters an exporter (pipeline.metrics) can read; plain numbers, no I/O."""

    active: bool = False
    events_read: int = 0
    events_acked: int = 0
    dead_lettered: int = 0
    # Rows set aside whose dead-letter copy could not be sent (kept, published = false).
    dead_letters_unsent: int = 0
    snapshot_rows: int = 0
    transactions: int = 0
    confirmed_lsn: LSN = field(default_factory=lambda: LSN.ZERO)
    server_wal_end: LSN = field(default_factory=lambda: LSN.ZERO)
    sessions: int = 0
    waiting_for_slot_pid: int | None = None
    # Transactions received whose events Kafka has not all acked, as of the last status
    # update: 0 means the reader has handed on everything the server sent so far.
    pending_transactions: int = 0

    @property
    def backlog_bytes(self) -> int:
        """How far behind the server's WAL end this reader is, for readiness.

        With nothing pending the reader has processed all the server sent (the rest of
        the WAL belongs to other tables or databases), so it is not behind at all.
        """
        if self.pending_transactions == 0:
            return 0
        return max(0, int(self.server_wal_end) - int(self.confirmed_lsn))


AckHook = Callable[[Position, BaseException | None, Callable[[], None]], None]
