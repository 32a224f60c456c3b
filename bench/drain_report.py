"""The markdown of the drain rounds (:mod:`bench.drain`): every run and the ratios; the goals
judged on the worst run (:func:`verdicts`, shown in the section's goal table). Pure (unit-tested in tests/unit/bench/test_drain_report.py)."""

from __future__ import annotations

from bench import cpu_share
from bench.drain import Round
from bench.report import table
from bench.runs import Verdict, judge_at_least
from bench.stats import ratio
from bench.threads import ThreadUsage

GOAL_DRAIN_EPS = 10_000.0
GOAL_BARE_RATIO = 0.75
LABELS = {
    "reader": "`pipeline reader` alone (WAL → Kafka)",
    "bare": "bare Faust: one agent, `stream.events()`, acks only",
    "ours": "`pipeline run` (WAL → Kafka → agents → projections committed)",
}


def _rate(value: float | None) -> str:
    return "did not finish" if value is None else f"{value:,.0f}"


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def run_ratios(rnd: Round) -> tuple[float | None, float | None]:
    """(ours / bare Faust, ours / reader alone) of one round, on the rates after the first
    record out; None where a side is missing or did not finish."""
    rates = {k: d.rate_after_first for k, d in rnd.drains.items()}
    ours = rates.get("ours")
    if ours is None:
        return None, None
    bare, reader = rates.get("bare"), rates.get("reader")
    return (
        ratio(ours, bare) if bare is not None else None,
        ratio(ours, reader) if reader is not None else None,
    )


def verdicts(rounds: list[Round]) -> list[Verdict]:
    """The two drain goals of issue 17, each on the worst round."""
    ours = [r.drains["ours"].rate_after_first if "ours" in r.drains else None for r in rounds]
    vs_bare = [run_ratios(r)[0] for r in rounds]
    return [
        judge_at_least(
            f"end-to-end drain >= {GOAL_DRAIN_EPS:,.0f} events/s", ours, GOAL_DRAIN_EPS, "/s"
        ),
        judge_at_least(
            f"end-to-end drain >= {GOAL_BARE_RATIO}x the bare Faust agent",
            vs_bare,
            GOAL_BARE_RATIO,
            "x",
        ),
    ]


def _row(rnd: Round, kind: str) -> list[str]:
    d = rnd.drains[kind]
    unfinished = ""
    if not d.complete:
        unfinished = f" (**did not finish** in {d.seconds_from_start:.0f} s"
        if d.covered_at_limit is not None:
            unfinished += f"; at most {d.covered_at_limit:,} records folded"
        unfinished += ")"
    return [
        str(rnd.run),
        LABELS[kind] + unfinished,
        _rate(d.rate_after_first),
        _rate(d.rate),
        f"{d.seconds_after_first:.1f} / {d.seconds_from_start:.1f}",
        f"{_us(d.cpu_us_per_event_after_first)} / {_us(d.cpu_us_per_event)}",
        "-" if d.peak_rss_mib is None else f"{d.peak_rss_mib:.0f}",
        d.load.text() if d.load else "-",
    ]


def machine_rows(rounds: list[Round]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of where the machine's cores went during each drain: the wait for a
    quiet machine before it, then from its first record out to done, the cores of each
    role that used any, the whole machine's busy cores and the stolen ones."""
    drains = [(r.run, k, r.drains[k]) for r in rounds for k in LABELS if k in r.drains]
    roles = cpu_share.roles_used([d.cores for _, _, d in drains])
    header = ["run", "drain", "waited for a quiet machine, s", *roles, "machine busy", "stolen"]
    rows = []
    for run, kind, d in drains:
        waited = "-"
        if d.quiet is not None:
            waited = f"{d.quiet.waited_s:.1f}" + ("" if d.quiet.reached else " (still busy)")
        rows.append([str(run), kind, waited, *cpu_share.core_cells(d.cores, d.machine, roles)])
    return header, rows


def _usage_cells(u: ThreadUsage | None) -> list[str]:
    if u is None:
        return ["-"] * 4
    return [
        f"{u.busiest_on_core:.2f}",
        f"{u.busiest_waiting:.2f}",
        f"{u.busiest_wanted:.2f}",
        f"{u.others_on_core:.2f}",
    ]


def thread_rows(rounds: list[Round]) -> list[list[str]]:
    """Rows of ``pipeline run``'s threads during its drain: over the whole window and its
    last half, the busiest thread on a core, waiting for one, the two together, and the
    other threads on a core (cores: seconds per wall second)."""
    rows = []
    for r in rounds:
        d = r.drains.get("ours")
        if d is None or d.threads is None:
            continue
        for part, usage in (("whole", d.threads), ("last half", d.threads_last_half)):
            rows.append([str(r.run), part, *_usage_cells(usage)])
    return rows


def _threads_part(rounds: list[Round]) -> list[str]:
    rows = thread_rows(rounds)
    if not rows:
        return []  # results from before the threads were watched
    return [
        "",
        "**`pipeline run`'s threads during its drain** (`bench/threads.py`: the kernel's "
        "scheduler statistics of each thread, `/proc/<pid>/task/<tid>/schedstat`, every "
        "0.25 s), from its first record out to done and over the last half of that window "
        "(its reader child is mostly through the backlog by then). The busiest thread is the "
        "event loop. Its time on a core plus its time waiting runnable for a core near 1.00 "
        "means the drain is bound by the CPU that one thread gets, not by waiting on "
        "PostgreSQL, Kafka or the GIL (those sleep, and count in neither).",
        "",
        table(
            [
                "run",
                "window",
                "busiest thread on a core",
                "waiting for a core",
                "together",
                "other threads on a core",
            ],
            rows,
        ),
    ]


def drain_section(rounds: list[Round], bootstrap_every: int) -> list[str]:
    """The event-drain part of the end-to-end section (markdown lines)."""
    if not rounds:
        return []
    n = rounds[0].events
    rows = [
        _row(r, kind) for r in rounds for kind in ("reader", "bare", "ours") if kind in r.drains
    ]
    ratio_rows = [[str(r.run), _x(run_ratios(r)[0]), _x(run_ratios(r)[1])] for r in rounds]
    fills = ", ".join(f"{r.fill_seconds:.0f} s" for r in rounds)
    return [
        f"**Backlog drain.** Each run commits {n:,} events through `api.emit_domain_event`, "
        f"one per transaction ({rounds[0].bootstraps:,} bootstraps, one in "
        f"{bootstrap_every:,}; one in ten `workflow.queue.completed`; the rest "
        "`invitation.email.sent`), then a sentinel transaction with an event on every "
        "partition, into a fresh database whose two slots predate the backlog (fill times: "
        f"{fills}). Then, in this order: the reader alone drains it into a topic of its own "
        "(done: the broker's append time of its last record); a bare Faust agent "
        "(`bench/bare_agent.py`) drains that same topic (done: its last record received); "
        "`pipeline run` drains it end to end (done: the commit time of the last partition's "
        'projection checkpoint past the sentinel). "After first" counts from the work\'s '
        "start (the reader: its slot first seen streaming; the bare agent: its first record "
        'received; `pipeline run`: the first append in its topic), "from start" from the '
        "process's start. CPU is utime + stime of the "
        "process (`/proc/<pid>/stat`; the bare agent's own `process_time`), per event, from "
        "the first record out / including start-up. Load: the 1-minute load average before "
        "→ after each drain, on a 2-core machine shared with other work.",
        "",
        table(
            [
                "run",
                "drain",
                "events/s after first",
                "events/s from start",
                "seconds (after first / from start)",
                "CPU µs/event (after first / all)",
                "peak RSS MiB",
                "load 1 min",
            ],
            rows,
        ),
        "",
        table(["run", "ours / bare Faust", "ours / reader alone"], ratio_rows),
        *_machine_part(rounds),
        *_threads_part(rounds),
    ]


def _machine_part(rounds: list[Round]) -> list[str]:
    header, rows = machine_rows(rounds)
    if not any(r.drains[k].quiet is not None for r in rounds for k in r.drains):
        return []  # results from before the machine was watched
    return [
        "",
        "**The machine during each drain.** After the backlog is written, PostgreSQL "
        "vacuums it and takes a checkpoint (`VACUUM (ANALYZE)`, `CHECKPOINT`), and before each "
        "drain the bench waits until the whole machine used less than "
        f"{cpu_share.QUIET_CORES} of a core for {cpu_share.QUIET_HOLD_S:.0f} s in a row "
        f"(at most {cpu_share.QUIET_LIMIT_S:.0f} s): the phases before it leave Temporal's "
        "server and PostgreSQL busy finishing thousands of workflows. Then, from the "
        "drain's first record out to done, the cores each role used (`bench/cpu_share.py`, "
        "`/proc` every 0.25 s, the samples inside that window), "
        "the whole machine's busy cores and the cores the hypervisor stole (`/proc/stat`). "
        "Two cores in all.",
        "",
        table(header, rows),
    ]
