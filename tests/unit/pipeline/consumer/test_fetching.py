"""fetching: Faust's worker consumer is built with our short fetch wait (no broker needed)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from types import SimpleNamespace

import faust
import pytest

from pipeline.consumer import fetching


@pytest.fixture(autouse=True)
def _collect_apps() -> Iterator[None]:
    """Collect each test's Faust app right after it: left to a later collection, their
    finalizers once ran inside pytest's AST rewrite of a module imported at session end
    (CPython 3.11.7: "SystemError: AST constructor recursion depth mismatch")."""
    yield
    gc.collect()


async def test_the_worker_consumer_waits_at_most_the_short_fetch_wait() -> None:
    fetching.install()
    app = faust.App("fetching-test", broker="kafka://127.0.0.1:9", loop=asyncio.get_running_loop())
    thread = app.consumer._thread  # type: ignore[attr-defined]  # the transport's consumer class built it
    consumer = thread._create_worker_consumer(app.transport)
    assert consumer._fetch_max_wait_ms == fetching.FETCH_MAX_WAIT_MS == 10


async def test_the_worker_consumer_reads_only_committed_records() -> None:
    fetching.install()
    app = faust.App("fetching-test", broker="kafka://127.0.0.1:9", loop=asyncio.get_running_loop())
    thread = app.consumer._thread  # type: ignore[attr-defined]
    consumer = thread._create_worker_consumer(app.transport)
    assert consumer._isolation_level == "read_committed"


async def test_a_gap_of_commit_markers_does_not_hold_the_committed_offset_back() -> None:
    """Offsets 5 and 8 are transaction markers (no records): once 4, 6, 7 and 9 are acked
    the partition commits 10 in one step, and never past a record not acked yet."""
    from faust.types import TP

    fetching.install()
    app = faust.App("fetching-test", broker="kafka://127.0.0.1:9", loop=asyncio.get_running_loop())
    consumer = app.consumer
    tp = TP("events", 0)
    consumer._committed_offset[tp] = 4  # type: ignore[attr-defined]

    def ack(offset: int) -> None:
        consumer._acked[tp].append(offset)  # type: ignore[attr-defined]
        consumer._acked_index[tp].add(offset)  # type: ignore[attr-defined]

    ack(4)
    await consumer._add_gap(tp, 5, 6)  # type: ignore[attr-defined]  # record 6 arrives after marker 5
    ack(6)
    ack(7)
    await consumer._add_gap(tp, 8, 9)  # type: ignore[attr-defined]  # record 9 arrives after marker 8
    assert consumer._new_offset(tp) == 8  # type: ignore[attr-defined]  # 9 not acked: not past it
    consumer._committed_offset[tp] = 8  # type: ignore[attr-defined]  # what the commit records
    ack(9)
    assert consumer._new_offset(tp) == 10  # type: ignore[attr-defined]


async def test_a_gap_right_after_offset_zero_is_not_missed() -> None:
    """Offset 0 a record, 1 its commit marker, 2 an aborted record, 3 the abort marker,
    4 the next record (a new reader fenced a dead one): Faust's own gap check skips a
    gap after offset 0, and the committed offset then stayed at 1 for good."""
    from faust.types import TP

    fetching.install()
    app = faust.App("fetching-test", broker="kafka://127.0.0.1:9", loop=asyncio.get_running_loop())
    app.topics._acking_topics.add("events")  # type: ignore[attr-defined]  # an agent's topic
    consumer = app.consumer
    tp = TP("events", 0)

    def ack(offset: int) -> None:
        consumer._acked[tp].append(offset)  # type: ignore[attr-defined]
        consumer._acked_index[tp].add(offset)  # type: ignore[attr-defined]

    ack(0)
    consumer._read_offset[tp] = 0  # type: ignore[attr-defined]  # the fetch loop read 0
    assert consumer._new_offset(tp) == 1  # type: ignore[attr-defined]
    consumer._committed_offset[tp] = 1  # type: ignore[attr-defined]  # what the commit records
    await consumer.fill_gap_after_offset_zero(tp, 4, "events")  # type: ignore[attr-defined]
    ack(4)
    assert consumer._new_offset(tp) == 5  # type: ignore[attr-defined]


async def test_no_gap_is_made_up_after_any_other_offset() -> None:
    from faust.types import TP

    fetching.install()
    app = faust.App("fetching-test", broker="kafka://127.0.0.1:9", loop=asyncio.get_running_loop())
    app.topics._acking_topics.add("events")  # type: ignore[attr-defined]
    consumer = app.consumer
    tp = TP("events", 0)
    for read, offset in ((None, 4), (3, 7), (0, 1)):
        consumer._read_offset[tp] = read  # type: ignore[attr-defined]
        await consumer.fill_gap_after_offset_zero(tp, offset, "events")  # type: ignore[attr-defined]
    assert not consumer._gap[tp]  # type: ignore[attr-defined]


async def test_a_partition_never_committed_is_sought_to_its_beginning() -> None:
    """Faust seeks to the committed offsets to drop what it fetched before a rebalance;
    aiokafka leaves a never-committed partition where it is (past the dropped records)."""

    class Consumer:
        def __init__(self) -> None:
            self.to_beginning: tuple[str, ...] = ()

        async def seek_to_committed(self) -> dict[str, int | None]:
            return {"p0": 7, "p1": None, "p2": 0}

        async def seek_to_beginning(self, *tps: str) -> bool:
            self.to_beginning = tps
            return True

    consumer = Consumer()
    committed = await fetching.seek_to_committed_or_beginning(consumer)  # type: ignore[arg-type]
    assert committed == {"p0": 7, "p1": None, "p2": 0}
    assert consumer.to_beginning == ("p1", "p2")


async def test_the_started_consumer_does_not_hold_a_brokers_fetch_for_records_waiting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """aiokafka's prefetch backoff held every partition's next fetch for 0.1 s while one
    partition's records waited to be taken (one broker leads them all): set to none."""
    from faust.transport.drivers import aiokafka as faust_aiokafka

    class Fetcher:
        _prefetch_backoff = 0.1
        _fetch_max_wait_ms = 1500

        def __init__(self) -> None:
            self._records: dict[str, object] = {}

        def _get_actions_per_node(self, assignment: object) -> int:
            return self._fetch_max_wait_ms

    class Consumer:
        _fetcher = Fetcher()

    async def started(self: faust_aiokafka.AIOKafkaConsumerThread) -> None:
        self._consumer = Consumer()  # type: ignore[assignment]  # what start() built

    fetching.install()
    monkeypatch.setattr(faust_aiokafka.AIOKafkaConsumerThread, "on_start", started)
    app = faust.App("fetching-test", broker="kafka://127.0.0.1:9", loop=asyncio.get_running_loop())
    thread = app.consumer._thread  # type: ignore[attr-defined]
    await thread.on_start()
    fetcher = thread._consumer._fetcher
    assert fetcher._prefetch_backoff == fetching.PREFETCH_BACKOFF_S == 0.0
    # Each fetch's wait is chosen by what it leaves out (test_fetch_wait.py).
    nothing_assigned = SimpleNamespace(tps=[])
    assert fetcher._get_actions_per_node(nothing_assigned) == fetching.IDLE_FETCH_MAX_WAIT_MS
    fetcher._records["t-0"] = object()
    assert fetcher._get_actions_per_node(nothing_assigned) == fetching.FETCH_MAX_WAIT_MS
