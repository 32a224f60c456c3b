"""The markdown of ``docs/benchmarks.md``'s end-to-end section, and writing it in place.

Only the text between this benchmark's markers is replaced; the rest of the file (the
reader benchmark's section, written by ``bench/bench_reader.py``) is left as it is. The
heading sits before the start marker so that another section's "until the next ``## ``"
replacement stops at it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from bench.runs import Verdict

HEADING = "## End to end: latency and throughput against the replaced designs"
START = "<!-- bench:latency:start -->"
END = "<!-- bench:latency:end -->"
DOC_TITLE = "# Benchmarks\n\nMeasured figures, each section written by the benchmark it names.\n"


def splice(text: str, body: str) -> str:
    """``text`` with the block between the markers replaced by ``body`` (added if absent)."""
    block = f"{START}\n{body.strip()}\n{END}"
    start = text.find(START)
    end = text.find(END)
    if start != -1 and end > start:
        return text[:start] + block + text[end + len(END) :]
    base = text if text.strip() else DOC_TITLE
    return base.rstrip("\n") + f"\n\n{HEADING}\n\n{block}\n"


def write_section(doc: Path, heading: str, section: str) -> None:
    """Replace the section that starts at ``heading`` (up to the next ``## ``) with
    ``section``, or add it at the end: how the reader benchmarks write their part."""
    text = doc.read_text() if doc.exists() else DOC_TITLE
    start = text.find(heading)
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        nxt = text.find("\n## ", start + len(heading))
        text = text[:start] + section + ("\n" + text[nxt + 1 :] if nxt != -1 else "")
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text.rstrip("\n") + "\n")


def write(doc: Path, body: str) -> None:
    """Read the file right before writing, then replace only this section."""
    text = doc.read_text() if doc.exists() else ""
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(splice(text, body).rstrip("\n") + "\n")


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def goal_mark(ok: bool | None) -> str:
    return "-" if ok is None else ("met" if ok else "**missed**")


def table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def machine_table(machine: Mapping[str, str]) -> str:
    return table(["", ""], [[k, v] for k, v in machine.items()])


def verdict_table(verdicts: Sequence[Verdict]) -> str:
    """Goals judged on the worst run: every run's value, the worst, met or missed."""
    rows = [
        [v.goal, ", ".join(v.text(x) for x in v.values), v.text(v.worst), goal_mark(v.met)]
        for v in verdicts
    ]
    return table(["goal (worst of the runs)", "each run", "worst", ""], rows)
