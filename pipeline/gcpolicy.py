"""How ``pipeline run`` uses Python's cyclic garbage collector once it is running.

``pipeline run`` starts with the collector paused (:mod:`pipeline.cli`) and resumes it
here once ready, freezing what start-up built (never scanned again), with full
collections a tenth as often as CPython's default.

Why the last: the records in flight (fetched, waiting in the edge's inbox, in a projection
batch) live long enough to be promoted to the oldest generation, and dying there they
count towards the next full collection, which scans every object not frozen. In a
100,000-event drain CPython's thresholds (700, 10, 10) ran 27 full collections, 0.9-1.5 s
of CPU of the process's ~7 s; with the oldest generation's threshold at 100, 3 of them,
0.07-0.12 s, the younger collections unchanged (docs/benchmarks.md, "Issue 17, 2026-12-03
(afternoon)"). Cyclic garbage is still collected, later: every object counts
towards the young collections as before, and a full collection still runs when the
objects promoted since the last one pass a quarter of the old generation (CPython's own
rule), so memory stays bounded.
"""

from __future__ import annotations

import gc
from typing import Final

# CPython's default thresholds for the young generations; the oldest generation's is 10.
YOUNG_THRESHOLD: Final = 700
MIDDLE_THRESHOLD: Final = 10
OLD_THRESHOLD: Final = 100


def resume() -> bool:
    """Set the thresholds and make sure the collector runs.

    When it was paused (``pipeline run``'s start), freeze what exists first and return
    True; a collector that already ran (a process started otherwise) only gets the
    thresholds, and False is returned.
    """
    paused = not gc.isenabled()
    if paused:
        gc.freeze()  # what start-up built lives as long as the process: never scan it again
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
    gc.enable()
    return paused
