"""A bare Faust app with one agent that counts a topic's records and does nothing else.

    python -m bench.bare_agent KAFKA TOPIC GROUP EXPECTED RESULT_FILE DATA_DIR

The ceiling Faust itself sets on a drain here: the same library, the same topic content
as the pipeline's (raw bytes, as the reader wrote them), one agent (concurrency 1)
iterating ``stream.events()``, each event acked by Faust as the next one is taken (its
default), no work per record, on the event loop ``pipeline run`` uses
(``PIPELINE_EVENT_LOOP``). Once ``EXPECTED`` records have arrived it writes
``{"first": t, "done": t, "records": n, "cpu_seconds": s}`` (``time.time()`` of the first
and the last record, the process's CPU time at the last; and ``cpu_at_first``) to
``RESULT_FILE`` and stops itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import faust
import mode.loop

from pipeline import eventloop


def main(argv: list[str]) -> None:
    kafka, topic_name, group, expected_s, result_file, data_dir = argv
    expected = int(expected_s)
    Path(data_dir).parent.mkdir(parents=True, exist_ok=True)  # Faust makes only the last level
    # The loop `pipeline run` runs on (PIPELINE_EVENT_LOOP), so the ratio compares designs:
    # in the main thread and in the thread where Faust runs aiokafka's consumer, which
    # `pipeline run` also gives its loop (pipeline/consumer/fetching.py). Faust's own way
    # to run on uvloop (`faust worker --loop uvloop`, mode.loop.use) sets the policy, which
    # reaches that thread too.
    if eventloop.chosen() == "uvloop":
        mode.loop.use("uvloop")
    loop = eventloop.new_loop()
    asyncio.set_event_loop(loop)
    app = faust.App(
        group,
        broker=f"kafka://{kafka}",
        store="memory://",
        datadir=data_dir,
        web_enabled=False,
        topic_partitions=8,
        consumer_auto_offset_reset="earliest",
        autodiscover=False,
        loop=loop,
    )
    topic = app.topic(topic_name, key_serializer="raw", value_serializer="raw")
    state = {"n": 0, "first": 0.0, "cpu_first": 0.0}

    async def count(stream: faust.StreamT[bytes]) -> None:
        async for _event in stream.events():
            if state["n"] == 0:
                state["first"] = time.time()
                state["cpu_first"] = time.process_time()
            state["n"] += 1
            if state["n"] == expected:
                result = {
                    "first": state["first"],
                    "done": time.time(),
                    "records": state["n"],
                    "cpu_seconds": time.process_time(),  # every thread of this process
                    "cpu_at_first": state["cpu_first"],
                }
                # Once, at the end: nothing else runs on this loop any more.
                Path(result_file).write_text(json.dumps(result))  # noqa: ASYNC240
                os.kill(os.getpid(), signal.SIGTERM)

    app.agent(topic, name="bench.bare_count", concurrency=1)(count)
    worker = faust.Worker(app, loop=loop, loglevel="warning", quiet=True)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main(sys.argv[1:])
