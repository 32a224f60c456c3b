"""fetching.add_gap: Faust's gap bookkeeping without rebuilding the tree per gap.

Faust's own ``_add_gap`` is the reference: over any sequence of gaps (in offset order, as
the fetch loop adds them, or again from an earlier offset, as after a re-fetch), both
leave a tree covering the same offsets with no two intervals overlapping, and the
committed offset ``_new_offset`` computes from it is the same.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import pytest
from faust.transport.consumer import Consumer
from intervaltree import IntervalTree  # type: ignore[import-untyped]

from pipeline.consumer.fetching import add_gap

TP = "events-0"


@dataclass
class _Books:
    """The two attributes of a Faust consumer that the gap code reads and writes."""

    _committed_offset: dict[Any, int | None] = field(default_factory=lambda: {TP: None})
    _gap: defaultdict[Any, IntervalTree] = field(default_factory=lambda: defaultdict(IntervalTree))


def _covered(tree: IntervalTree) -> set[int]:
    return {o for iv in tree for o in range(iv.begin, iv.end)}


def _no_overlaps(tree: IntervalTree) -> bool:
    ivs = sorted(tree)
    return all(a.end <= b.begin for a, b in itertools.pairwise(ivs))


def _gaps(rng: random.Random, n: int, refetch_every: int) -> list[tuple[int, int]]:
    """n gaps in offset order (a record, then a marker or two), with now and then the
    last few gaps again from an earlier offset (a partition fetched again)."""
    out: list[tuple[int, int]] = []
    offset = 0
    for i in range(n):
        offset += rng.randint(1, 20)  # records
        width = rng.randint(1, 3)  # markers, aborted records
        out.append((offset, offset + width - 1))
        offset += width
        if refetch_every and i % refetch_every == refetch_every - 1:
            back = rng.randint(1, min(5, len(out)))
            out.extend(out[-back:])
    return out


@pytest.mark.parametrize("seed", range(8))
def test_the_same_offsets_as_faust_and_never_overlapping(seed: int) -> None:
    rng = random.Random(seed)
    gaps = _gaps(rng, 300, refetch_every=rng.choice([0, 7, 40]))
    ours, faust_books = _Books(), _Books()
    committed = rng.choice([None, 0, 50])
    ours._committed_offset[TP] = faust_books._committed_offset[TP] = committed

    async def run() -> None:
        for begin, end in gaps:
            await add_gap(ours, TP, begin, end)
            await Consumer._add_gap(faust_books, TP, begin, end)  # type: ignore[arg-type]

    asyncio.run(run())
    assert _covered(ours._gap[TP]) == _covered(faust_books._gap[TP])
    assert _no_overlaps(ours._gap[TP])


def test_gaps_in_offset_order_are_inserted_without_a_merge(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    merges = 0
    real = IntervalTree.merge_overlaps

    def counting(self: IntervalTree, *args: Any, **kwargs: Any) -> None:
        nonlocal merges
        merges += 1
        real(self, *args, **kwargs)

    monkeypatch.setattr(IntervalTree, "merge_overlaps", counting)
    books = _Books()
    gaps = _gaps(random.Random(1), 2_000, refetch_every=0)

    async def run() -> None:
        for begin, end in gaps:
            await add_gap(books, TP, begin, end)
        assert merges == 0
        await add_gap(books, TP, *gaps[-1])  # the last one again: a re-fetch
        assert merges == 1

    asyncio.run(run())
    assert len(books._gap[TP]) == 2_000 and _no_overlaps(books._gap[TP])


def test_nothing_at_or_below_the_committed_offset() -> None:
    books = _Books()
    books._committed_offset[TP] = 10

    async def run() -> None:
        await add_gap(books, TP, 3, 8)
        await add_gap(books, TP, 9, 12)

    asyncio.run(run())
    assert _covered(books._gap[TP]) == {11, 12}
