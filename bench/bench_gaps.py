"""Faust's gap bookkeeping against ours (``pipeline.consumer.fetching.add_gap``), same run.

One gap per transaction marker, in offset order, as the fetch loop records them while the
handlers are behind: CPU seconds to record N gaps on one partition with Faust's
``Consumer._add_gap`` (which rebuilds the tree each time) and with ours.

    .venv/bin/python -m bench.bench_gaps --gaps 1000 2000 4000
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from faust.transport.consumer import Consumer
from intervaltree import IntervalTree  # type: ignore[import-untyped]

from pipeline.consumer.fetching import add_gap

AddGap = Callable[[Any, Any, int, int], Awaitable[None]]


class _Books:
    """The two attributes of a Faust consumer the gap code uses."""

    def __init__(self) -> None:
        self._committed_offset: dict[str, int | None] = {"p": None}
        self._gap: defaultdict[str, IntervalTree] = defaultdict(IntervalTree)


async def _cpu_seconds(add: AddGap, gaps: int) -> float:
    books = _Books()
    started = time.process_time()
    for i in range(gaps):
        offset = i * 10 + 9  # nine records, then the transaction's commit marker
        await add(books, "p", offset, offset)
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gaps", type=int, nargs="+", default=[1000, 2000, 4000])
    args = parser.parse_args()
    print("| gaps | Faust's `_add_gap`, CPU s | ours, CPU s | ours / Faust's |")
    print("| --- | --- | --- | --- |")
    for n in args.gaps:
        faust = asyncio.run(_cpu_seconds(Consumer._add_gap, n))
        ours = asyncio.run(_cpu_seconds(add_gap, n))
        print(f"| {n:,} | {faust:.3f} | {ours:.3f} | {ours / faust:.4f}x |")


if __name__ == "__main__":
    main()
