"""The chaos run's one table, its fault log, and the docs/reliability.md section.

Pure apart from writing files: ``Outcome`` holds the counts the harness measured, and
everything here only formats them.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.chaos_checks import median_max
from bench.chaos_plan import FAULT_KINDS, RECOVERY_EVENT


@dataclass(frozen=True, slots=True)
class FaultRecord:
    """A fault as injected, and what followed it."""

    index: int
    kind: str
    at: float  # seconds into the load when it began
    seconds: float  # from its start until the component was restored
    detail: str
    recovery: float | None  # restored -> the kind's recovery event
    worst_wait: float | None  # longest initiated -> pending wait until the next fault


@dataclass(slots=True)
class Outcome:
    seed: int
    replicas: int
    emitted: int
    by_signature: dict[str, int]
    completed: int = 0
    failed: int = 0
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    kafka_records: int = 0
    kafka_duplicates_by_position: int = 0
    kafka_duplicates_by_id: int = 0
    missing_from_kafka: int = 0
    stuck_jobs: int = 0
    temporal_not_one_run: int = 0
    unexpected_exits: dict[str, list[int]] = field(default_factory=dict)
    sigterm_seconds: dict[str, float | None] = field(default_factory=dict)
    faults: list[FaultRecord] = field(default_factory=list)
    examples: dict[str, list[str]] = field(default_factory=dict)
    reasons: Counter[str] = field(default_factory=Counter)
    wall_seconds: float = 0.0

    def violations(self) -> int:
        """Everything that makes the run fail: the harness exits non-zero when > 0."""
        return (
            self.lost
            + self.duplicated
            + self.out_of_order
            + max(self.kafka_duplicates_by_position, self.kafka_duplicates_by_id)
            + self.missing_from_kafka
            + self.stuck_jobs
        )


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def recovery_rows(faults: list[FaultRecord]) -> list[tuple[str, str]]:
    rows = []
    for kind in FAULT_KINDS:
        mine = [f for f in faults if f.kind == kind]
        if not mine:
            continue
        measured = [f.recovery for f in mine if f.recovery is not None]
        stats = median_max(measured)
        unmeasured = len(mine) - len(measured)
        text = (
            "not measured"
            if stats is None
            else f"median {stats[0]:.1f} s, max {stats[1]:.1f} s to the next {RECOVERY_EVENT[kind]}"
        )
        if unmeasured and stats is not None:
            text += f" ({unmeasured} with no such event after it)"
        waits = [f.worst_wait for f in mine if f.worst_wait is not None]
        if waits:
            text += f"; worst initiated→pending wait {max(waits):.1f} s"
        rows.append((f"recovery after {kind} (n={len(mine)})", text))
    return rows


def table(o: Outcome) -> str:
    """The one table: the counts, then recovery per fault kind."""
    exits = ", ".join(f"{name} {len(codes)}" for name, codes in o.unexpected_exits.items() if codes)
    stops = ", ".join(
        f"{name} {_seconds(s) if s is not None else 'killed after grace'}"
        for name, s in o.sigterm_seconds.items()
    )
    rows: list[tuple[str, str]] = [
        ("seed", str(o.seed)),
        ("replicas of `pipeline run`", str(o.replicas)),
        (
            "bootstraps emitted",
            f"{o.emitted} ({', '.join(f'{k} {v}' for k, v in sorted(o.by_signature.items()))})",
        ),
        ("completed (workflow.queue.completed)", str(o.completed)),
        ("failed (workflow.queue.failed)", str(o.failed)),
        ("**lost** (an effect or its bookkeeping missing)", str(o.lost)),
        ("**duplicated effects** (events or Temporal runs)", str(o.duplicated)),
        ("**chains out of order**", str(o.out_of_order)),
        ("Kafka records read", str(o.kafka_records)),
        ("**duplicate Kafka records** by (commit_lsn, idx)", str(o.kafka_duplicates_by_position)),
        ("**duplicate Kafka records** by event id", str(o.kafka_duplicates_by_id)),
        ("**rows missing from Kafka**", str(o.missing_from_kafka)),
        ("**stuck jobs** (pending/processing at the end)", str(o.stuck_jobs)),
        ("workflow ids without exactly one completed run", str(o.temporal_not_one_run)),
        ("faults injected", str(len(o.faults))),
        *recovery_rows(o.faults),
        ("unexpected exits (restarted)", exits or "0"),
        ("SIGTERM to exit at the end", stops or "-"),
        ("wall time", f"{o.wall_seconds:.0f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"| {'measure'.ljust(width)} | value |", f"| {'-' * width} | --- |"]
    lines += [f"| {k.ljust(width)} | {v} |" for k, v in rows]
    return "\n".join(lines)


def fault_log(o: Outcome) -> str:
    lines = [
        "| # | at | fault | restored after | recovery | detail |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for f in o.faults:
        lines.append(
            f"| {f.index} | {f.at:.1f} s | {f.kind} | {f.seconds:.1f} s | "
            f"{_seconds(f.recovery)} | {f.detail} |"
        )
    return "\n".join(lines)


def examples(o: Outcome) -> str:
    """How many organizations each reason hit, then a few organizations per category."""
    lines = [f"- {reason}: {n}" for reason, n in sorted(o.reasons.items())]
    for what, items in o.examples.items():
        if items:
            lines.append(f"- e.g. {what}: " + "; ".join(items[:5]))
    return "\n".join(lines) if lines else "- none"


def section(o: Outcome, label: str, command: str, when: str, code: str) -> str:
    verdict = "PASS" if o.violations() == 0 else f"FAIL ({o.violations()} violations)"
    return (
        f"### Run `{label}`: {verdict}\n\n"
        f"Command ({when}, code at {code}):\n\n```bash\n{command}\n```\n\n"
        f"{table(o)}\n\n"
        f"Faults, in order:\n\n{fault_log(o)}\n\n"
        f"Organizations by reason, and examples:\n\n{examples(o)}\n"
    )


def update_docs(path: Path, label: str, text: str) -> None:
    """Replace (or append) the section between this label's markers in ``path``."""
    start, end = f"<!-- chaos:{label}:start -->", f"<!-- chaos:{label}:end -->"
    block = f"{start}\n{text}{end}\n"
    current = path.read_text() if path.exists() else ""
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end) + r"\n?", re.DOTALL)
    if pattern.search(current):
        updated = pattern.sub(lambda _: block, current)
    else:
        updated = current.rstrip("\n") + ("\n\n" if current else "") + block
    path.write_text(updated)
