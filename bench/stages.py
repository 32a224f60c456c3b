"""The stage table: where each millisecond of ``pipeline run``'s commit -> workflow start
goes, per bootstrap, from the timestamps each stage leaves behind.

For every bootstrap of the steady load (keyed by its organization id), each stage's time
is the moment it became durable or visible: the initiated event's commit (WAL commit
record), its Kafka append (the broker's ``LogAppendTime``), the commit of its
``workflow.queue.pending`` event, of ``workflow.queue.claimed``, Temporal's execution
``start_time``, and the commit of ``organization.bootstrap.workflow_started``. All these
clocks are the same machine's. Pure (unit-tested in tests/unit/bench/test_stages.py).

An interval's p50 is over the bootstraps that reached both of its ends; the p50s of the
intervals need not add up to the p50 of the whole (a percentile of a sum is not the sum of
the percentiles), so the table shows the whole too.
"""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.report import fmt_ms, table
from bench.stats import summarize

# (key of the time in a bootstrap's record, label of the interval that ends there)
STAGES: tuple[tuple[str, str], ...] = (
    ("committed", ""),
    ("kafka", "commit → Kafka append (broker `LogAppendTime`)"),
    ("pending", "Kafka append → `workflow.queue.pending` committed"),
    ("claimed", "`pending` → `workflow.queue.claimed` committed"),
    ("start", "`claimed` → Temporal start (execution `start_time`)"),
    ("started_event", "Temporal start → `workflow_started` committed"),
)
TOTAL = "commit → `workflow_started` committed (whole)"
TO_START = "commit → Temporal start (whole)"


def intervals(times: Mapping[str, Mapping[str, float]]) -> dict[str, list[float]]:
    """Per interval label, the ms between consecutive stages of every bootstrap that has
    both (pure). ``times`` maps a stage key of :data:`STAGES` to {bootstrap: POSIX s}; only
    the bootstraps with a commit time count (the load's, not the warm-up's)."""
    out: dict[str, list[float]] = {}
    first = times.get("committed", {})
    for (prev, _), (key, label) in itertools.pairwise(STAGES):
        a, b = times.get(prev, {}), times.get(key, {})
        out[label] = [(b[k] - a[k]) * 1000.0 for k in a if k in b and k in first]
    for end, label in (("start", TO_START), ("started_event", TOTAL)):
        last = times.get(end, {})
        out[label] = [(last[k] - first[k]) * 1000.0 for k in first if k in last]
    return out


@dataclass(frozen=True, slots=True)
class StageRun:
    """One run's stage intervals (ms) and the load average around it."""

    run: int
    samples: dict[str, list[float]]
    load: str = ""


def _cell(values: Sequence[float]) -> str:
    s = summarize(values)
    if s is None:
        return "-"
    return f"{fmt_ms(s.p50)} / {fmt_ms(s.p99)} (n={s.n:,})"


def stage_table(runs: Sequence[StageRun]) -> str:
    """Rows: the intervals in order, then the wholes; a column per run: p50 / p99 ms."""
    labels = [label for _, label in STAGES[1:]] + [TO_START, TOTAL]
    headers = ["interval"] + [
        f"run {r.run}: p50 / p99 ms" + (f" (load {r.load})" if r.load else "") for r in runs
    ]
    rows = [[label] + [_cell(r.samples.get(label, [])) for r in runs] for label in labels]
    return table(headers, rows)


def runs_from_payload(payload: Mapping[str, Any]) -> list[StageRun]:
    """The stage runs of a ``bench/results/e2e-*.json`` written by ``bench.run`` (pure)."""
    out = []
    for path in payload.get("paths", []):
        if path.get("path") != "ours":
            continue
        load = path.get("load_average") or {}
        text = f"{load['before']:.2f} → {load['after']:.2f}" if load else ""
        out.append(StageRun(int(path.get("run", 1)), dict(path.get("stages", {})), text))
    return sorted(out, key=lambda r: r.run)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.stages RESULT.json``: the stage table of a kept result, again."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m bench.stages bench/results/e2e-<stamp>.json", file=sys.stderr)
        return 2
    payload = json.loads(Path(args[0]).read_text())
    print(stage_table(runs_from_payload(payload)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
