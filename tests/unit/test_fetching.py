"""fetching: Faust's worker consumer is built with our short fetch wait (no broker needed)."""

from __future__ import annotations

import asyncio

import faust

from pipeline import fetching


async def test_the_worker_consumer_waits_at_most_the_short_fetch_wait() -> None:
    fetching.install()
    app = faust.App("fetching-test", broker="kafka://127.0.0.1:9", loop=asyncio.get_running_loop())
    thread = app.consumer._thread  # type: ignore[attr-defined]  # the transport's consumer class built it
    consumer = thread._create_worker_consumer(app.transport)
    assert fetching.fetch_max_wait_ms(consumer) == fetching.FETCH_MAX_WAIT_MS == 10


async def test_the_worker_consumer_reads_only_committed_records() -> None:
    fetching.install()
    app = faust.App("fetching-test", broker="kafka://127.0.0.1:9", loop=asyncio.get_running_loop())
    thread = app.consumer._thread  # type: ignore[attr-defined]
    consumer = thread._create_worker_consumer(app.transport)
    assert consumer._isolation_level == "read_committed"
