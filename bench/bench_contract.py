"""Micro-benchmark: the cost of contract validation per event, against orjson decoding.

    .venv/bin/python bench/bench_contract.py [--events 100000] [--repeat 5]

Every consumed Kafka record is decoded (orjson) and then validated against the contract;
decoding is the floor any consumer pays, so validation is reported as a ratio to it.
The events are the contract's own examples, cycled, each with a fresh event id so the
values are not byte-identical. Each figure is the best of ``--repeat`` runs, with the
garbage collector paused, which is the least noisy estimate of the steady-state cost.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import os
import platform
import time
import uuid
from collections.abc import Callable, Sequence

import orjson

from pipeline.contract import Contract, JsonObject


def build_values(contract: Contract, count: int) -> list[bytes]:
    """``count`` Kafka record values: the contract's examples, cycled, with fresh ids."""
    examples = [
        example.payload
        for event_type in sorted(contract.event_types())
        for example in contract.examples(event_type)
    ]
    values = []
    for payload in itertools.islice(itertools.cycle(examples), count):
        values.append(orjson.dumps({**payload, "id": str(uuid.uuid4())}))
    return values


def best_of(repeat: int, run: Callable[[], None]) -> float:
    """The fastest of ``repeat`` runs of ``run``, in seconds."""
    timings = []
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            run()
            timings.append(time.perf_counter() - start)
        finally:
            gc.enable()
    return min(timings)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print µs/event for decoding, validating, and both."""
    parser = argparse.ArgumentParser(description="contract validation vs orjson decoding")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    count: int = args.events
    repeat: int = args.repeat

    started = time.perf_counter()
    contract = Contract.load()
    load_ms = (time.perf_counter() - started) * 1000
    values = build_values(contract, count)
    rows: list[JsonObject] = [orjson.loads(value) for value in values]
    validate = contract.validate_event
    loads = orjson.loads

    def decode_all() -> None:
        for value in values:
            loads(value)

    def validate_all() -> None:
        for row in rows:
            validate(row)

    def decode_and_validate_all() -> None:
        for value in values:
            validate(loads(value))

    decode = best_of(repeat, decode_all) / count * 1e6
    check = best_of(repeat, validate_all) / count * 1e6
    both = best_of(repeat, decode_and_validate_all) / count * 1e6
    mean_size = sum(len(value) for value in values) / count

    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")
    print(f"contract: load and compile {load_ms:.0f} ms, {len(contract.event_types())} types")
    print(f"events: {count}, mean value {mean_size:.0f} bytes, best of {repeat} runs")
    print(f"orjson.loads            {decode:7.2f} µs/event")
    print(f"validate_event          {check:7.2f} µs/event")
    print(f"loads + validate_event  {both:7.2f} µs/event")
    print(f"validation / decoding   {check / decode:7.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
