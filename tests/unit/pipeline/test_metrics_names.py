"""Issue 15 item 7: counters end in _total, consumer lag is exported per partition."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import REGISTRY, generate_latest

from pipeline import metrics


@dataclass(frozen=True, order=True)
class TP:
    topic: str
    partition: int


@dataclass
class FakeConsumer:
    """The three things the collector reads from Faust's consumer."""

    ends: dict[TP, int | None]
    _committed_offset: dict[TP, int | None] = field(default_factory=dict)

    def assignment(self) -> set[TP]:
        return set(self.ends)

    def highwater(self, tp: TP) -> int | None:
        return self.ends[tp]


def test_consumer_lag_is_exported_per_partition() -> None:
    consumer = FakeConsumer(
        ends={TP("t", 0): 10, TP("t", 1): 4, TP("t", 2): None},
        _committed_offset={TP("t", 0): 7},
    )
    metrics.export_consumer_lag(lambda: consumer)
    page = generate_latest().decode()
    assert 'pipeline_consumer_lag_records{partition="0",topic="t"} 3.0' in page
    assert 'pipeline_consumer_lag_records{partition="1",topic="t"} 4.0' in page
    assert 'partition="2"' not in page  # not fetched yet: no sample rather than a guess


@dataclass
class FakeStats:
    events_read: int = 12
    events_acked: int = 11


def test_reader_counts_are_counters_named_total() -> None:
    metrics.export_reader_counters(FakeStats)
    page = generate_latest().decode()
    assert "pipeline_reader_events_read_total 12.0" in page
    assert "pipeline_reader_events_produced_total 11.0" in page


def test_every_counter_sample_ends_in_total() -> None:
    for family in REGISTRY.collect():
        if family.type == "counter":
            names = {s.name for s in family.samples if not s.name.endswith("_created")}
            assert all(n.endswith("_total") for n in names), names
