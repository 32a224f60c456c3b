"""Judge a chaos run that was stopped before it settled (its database kept).

    .venv/bin/python -m bench.chaos_partial --nonce c2e1c1aa --harness-log run.txt

A long run on a machine too slow to settle it in the time there is: the harness was
stopped (SIGKILL, so its clean-up did not drop the database and topics) and its
processes ended. This applies the harness's own checks (bench/chaos_verdicts.py) to the
bootstraps that reached an outcome, and to every bootstrap the checks that do not need
an outcome (duplicated effects, order so far); the Kafka checks cover the whole topic.
Recovery per fault comes from the harness's log lines (``fault N: kind`` when it began,
``... done in X s`` when the component was restored).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg

from bench import chaos_observe as observe
from bench.chaos_checks import Chain, FaultWindow, judge_chain
from bench.chaos_drive import Emitted, Injected
from bench.chaos_report import Outcome, fault_log, table
from bench.chaos_verdicts import judge_run, recoveries
from pipeline import events as ev
from pipeline.dev.layout import load_layout

_FAULT = re.compile(r"^(\S+ \S+) chaos fault (\d+): (\w+)( done in [\d.]+ s: (.*))?$")


def emitted_of(dsn: str) -> list[Emitted]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT stream_id::text, idempotency_key, jsonb_array_length(event_data->'admins') "
            "FROM domain_events WHERE event_type = %s",
            (ev.BOOTSTRAP_INITIATED,),
        ).fetchall()
    return [
        Emitted(org, "stream" if (key or "").startswith("chaos:") else "aggregate", int(admins))
        for org, key, admins in rows
    ]


def faults_of(log_text: str) -> list[Injected]:
    began: dict[int, float] = {}
    out = []
    for line in log_text.splitlines():
        m = _FAULT.match(line)
        if not m:
            continue
        at = datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=UTC).timestamp()
        index = int(m[2])
        if m[4] is None:
            began[index] = at
        elif index in began:
            window = FaultWindow(index, m[3], began[index], at)
            out.append(Injected(window, None, m[5]))  # type: ignore[arg-type]
    return out


async def main(args: argparse.Namespace) -> int:
    layout = load_layout()
    dsn = f"postgresql://postgres@{layout.host}:{layout.pg_port}/chaos_{args.nonce}"
    emitted = await asyncio.to_thread(emitted_of, dsn)
    store = await asyncio.to_thread(observe.read_store, dsn)
    outcome_of = {
        org: next((t for t, _ in chain if t in (ev.QUEUE_COMPLETED, ev.QUEUE_FAILED)), None)
        for org, chain in store.chains.items()
    }
    finished = [e for e in emitted if outcome_of.get(e.org_id)]
    open_ = [e for e in emitted if not outcome_of.get(e.org_id)]
    temporal = await observe.read_temporal(
        layout.temporal_address, f"chaos-{args.nonce}", len(finished), 30
    )
    topic = await observe.read_topic(layout.kafka_bootstrap, f"chaos-{args.nonce}", args.partitions)
    outcome = Outcome(seed=args.seed, replicas=args.replicas, emitted=len(emitted), by_signature={})
    judge_run(outcome, finished, store, temporal, topic)
    open_duplicated = open_out_of_order = 0
    for e in open_:
        verdict = judge_chain(
            Chain(e.org_id, tuple(t for t, _ in store.chains.get(e.org_id, [])), e.admins)
        )
        open_duplicated += bool(verdict.duplicated)
        open_out_of_order += bool(verdict.out_of_order)
    log_text = await asyncio.to_thread(Path(args.harness_log).read_text, encoding="utf-8")
    injected = faults_of(log_text)
    first = min(
        at for chain in store.chains.values() for t, at in chain if t == ev.BOOTSTRAP_INITIATED
    )
    last = max(at for chain in store.chains.values() for _, at in chain)
    cluster: Any = SimpleNamespace(injected=injected)
    recoveries(outcome, cluster, store, first, last)
    print(table(outcome))
    print()
    print(fault_log(outcome))
    print(
        f"\nbootstraps emitted {len(emitted)}: with an outcome {len(finished)} (judged above), "
        f"still open when stopped {len(open_)}: of those, duplicated effects so far "
        f"{open_duplicated}, out of order so far {open_out_of_order}"
    )
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.chaos_partial")
    p.add_argument("--nonce", required=True, help="the run's id (its database chaos_<nonce>)")
    p.add_argument("--harness-log", required=True, help="the harness's own output")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--replicas", type=int, default=2)
    return p


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parser().parse_args())))
