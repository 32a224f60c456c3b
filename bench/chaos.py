"""Chaos harness (issue 14): bootstraps under random faults, verified from outside.

    .venv/bin/python -m bench.chaos --seed 14 --bootstraps 300 --rate 3 --faults 6

Brings up the local services of this checkout (``pipeline dev``), creates its own
database, slot, topic, consumer group and task queue, starts ``pipeline worker`` (the real
OrganizationBootstrapWorkflow, local DNS and email providers) and one or two ``pipeline
run`` replicas (``PIPELINE_INSTANCE_ID`` set, as in the StatefulSet). Then it emits the
bootstraps at a steady rate while injecting the seeded faults (bench/chaos_plan.py),
waits (with a deadline, never on speed) until every job has an outcome, and checks from
outside: SQL over the event store and the projections, Temporal's visibility API, a plain
Kafka consumer over the topic. It prints one table and exits 1 when anything was lost,
duplicated, out of order, duplicated in Kafka, or stuck; 2 when it could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from aiokafka.admin import AIOKafkaAdminClient

from bench import chaos_observe as observe
from bench import chaos_procs as procs
from bench.chaos_drive import Cluster, emit_all
from bench.chaos_plan import Options, Plan, make_plan
from bench.chaos_report import Outcome, section, table, update_docs
from bench.chaos_verdicts import judge_run, recoveries
from pipeline import events as ev
from pipeline.dev import services
from pipeline.dev.errors import ServiceError
from pipeline.dev.layout import REPO_ROOT, DevLayout, load_layout
from pipeline.migrate import migrate

log = logging.getLogger("chaos")
DOCS = REPO_ROOT / "docs" / "reliability.md"
SIGTERM_GRACE = 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _admin_dsn(layout: DevLayout) -> str:
    return f"postgresql://postgres@{layout.host}:{layout.pg_port}/postgres"


def _create_database(layout: DevLayout, name: str) -> str:
    with psycopg.connect(_admin_dsn(layout), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = f"postgresql://postgres@{layout.host}:{layout.pg_port}/{name}"
    migrate(dsn)
    return dsn


def _drop_database(layout: DevLayout, name: str) -> None:
    with psycopg.connect(_admin_dsn(layout), autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (name,),
        )
        conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            "WHERE database = %s AND NOT active",
            (name,),
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _delete_topics(bootstrap: str, nonce: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics() if nonce in t]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


def _cluster(layout: DevLayout, dsn: str, nonce: str, replicas: int, partitions: int) -> Cluster:
    state = layout.state_dir / "chaos" / nonce
    state.mkdir(parents=True, exist_ok=True)
    base = {
        **os.environ,
        **layout.env(),
        "PIPELINE_DATABASE_URL": dsn,
        "PIPELINE_TOPIC": f"chaos-{nonce}",
        "PIPELINE_DEAD_LETTER_TOPIC": f"chaos-dlq-{nonce}",
        "PIPELINE_TOPIC_PARTITIONS": str(partitions),
        "PIPELINE_SLOT_NAME": f"chaos_{nonce}",
        "PIPELINE_CONSUMER_GROUP": f"chaos-{nonce}",
        "PIPELINE_TEMPORAL_TASK_QUEUE": f"chaos-{nonce}",
        "PIPELINE_EMAIL_PROVIDER": "local",
        "PIPELINE_EMAIL_OUTBOX_DIR": str(state / "outbox"),
        "PIPELINE_DNS_PROVIDER": "local",
    }

    def managed(name: str, args: list[str], extra: dict[str, str]) -> procs.Managed:
        return procs.Managed(
            name=name,
            args=args,
            env={**base, **extra},
            log_file=layout.log_dir / f"chaos-{nonce}-{name}.log",
            pid_file=layout.run_dir / f"chaos-{name}.pid",
        )

    runs = [
        managed(
            f"run-{i}",
            ["run"],
            {
                "PIPELINE_INSTANCE_ID": f"chaos-{nonce}-{i}",
                "PIPELINE_WEB_PORT": str(_free_port()),
                "PIPELINE_DATA_DIR": str(state / f"faust-{i}"),
            },
        )
        for i in range(replicas)
    ]
    return Cluster(layout, managed("worker", ["worker"], {}), runs)


async def _wait(check: Callable[[], bool], what: str, within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await asyncio.to_thread(check):
            return
        await asyncio.sleep(0.5)
    raise RuntimeError(f"timed out after {within:.0f}s waiting for {what}")


def _slot_active(dsn: str, slot: str) -> bool:
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchone()
    return bool(row and row[0])


async def _settle(dsn: str, orgs: int, stall: float, cap: float) -> float:
    """Wait until every bootstrap has an outcome and no job is open; seconds waited.

    Never on speed: it waits as long as events keep coming (a slow machine only makes
    the run longer), and gives up when none came for ``stall`` seconds or after ``cap``;
    what is left open then is reported as stuck.
    """
    began = time.monotonic()
    last_change, last_events = began, -1
    while time.monotonic() - began < cap:
        try:
            done, open_jobs, events = await asyncio.to_thread(observe.settled, dsn)
        except psycopg.OperationalError:
            done, open_jobs, events = 0, orgs, last_events
        if done >= orgs and open_jobs == 0:
            return time.monotonic() - began
        if events != last_events:
            last_change, last_events = time.monotonic(), events
        elif time.monotonic() - last_change > stall:
            log.warning("no new event for %.0fs: reporting what is left as stuck", stall)
            return time.monotonic() - began
        await asyncio.sleep(1.0)
    log.warning("not settled after %.0fs: reporting what is left as stuck", cap)
    return time.monotonic() - began


async def _clean_up(
    cluster: Cluster, layout: DevLayout, db: str, nonce: str, *, keep: bool, started: list[str]
) -> None:
    """Stop our processes, drop the run's database and topics, stop what we started.

    A failing step is logged, not raised: it must not hide why the run ended.
    """
    for m in cluster.managed():
        m.signal(signal.SIGCONT)
        await m.stop(SIGTERM_GRACE)
    steps: list[tuple[str, Callable[[], Awaitable[object]]]] = []
    if not keep:
        steps.append(("drop the database", lambda: asyncio.to_thread(_drop_database, layout, db)))
        steps.append(("delete the topics", lambda: _delete_topics(layout.kafka_bootstrap, nonce)))
    if started:
        steps.append(
            ("stop the services", lambda: asyncio.to_thread(services.down, layout, started))
        )
    for what, step in steps:
        try:
            await step()
        except (RuntimeError, OSError, psycopg.Error, ServiceError) as exc:
            log.warning("clean-up: could not %s: %s", what, exc)


async def run(plan: Plan, args: argparse.Namespace, command: str) -> int:
    began = time.monotonic()
    layout = load_layout()
    procs.kill_leftovers(layout.run_dir)
    try:
        started = await asyncio.to_thread(services.up, layout)
    except ServiceError as exc:
        print(
            f"chaos: a local service cannot start: {exc}\nfix it, then run again", file=sys.stderr
        )
        return 2
    nonce = uuid.uuid4().hex[:8]
    db = f"chaos_{nonce}"
    dsn = await asyncio.to_thread(_create_database, layout, db)
    o = plan.options
    cluster = _cluster(layout, dsn, nonce, o.replicas, args.partitions)
    print(
        f"chaos: seed {o.seed}, database {db}, logs {layout.log_dir}/chaos-{nonce}-*.log",
        flush=True,
    )
    supervisor: asyncio.Task[None] | None = None
    try:
        cluster.worker.start()
        cluster.runs[0].start()
        first = cluster.runs[0]
        await _wait(
            lambda: _slot_active(dsn, f"chaos_{nonce}") or not first.alive(),
            "the first replica's reader",
            180,
        )
        if not first.alive():
            raise RuntimeError(f"`pipeline run` exited at start: see {first.log_file}")
        for replica in cluster.runs[1:]:
            replica.start()
        supervisor = asyncio.create_task(cluster.supervise())
        loop = asyncio.get_running_loop()
        t0 = loop.time() + 1.0
        t0_wall = time.time() + 1.0
        emitting = asyncio.create_task(emit_all(dsn, plan.emissions, t0))
        await cluster.inject_all(plan.faults, t0)
        emitted = await emitting
        load_end = time.time()
        print(
            f"chaos: {len(emitted)} emitted, {len(cluster.injected)} faults; settling", flush=True
        )
        await _settle(dsn, len(emitted), args.stall_timeout, args.settle_max)
        supervisor.cancel()
        store = await asyncio.to_thread(observe.read_store, dsn)
        outcome = Outcome(
            seed=o.seed,
            replicas=o.replicas,
            emitted=len(emitted),
            by_signature=dict(Counter(e.signature for e in emitted)),
        )
        outcome.unexpected_exits = {m.name: m.unexpected_exits for m in cluster.managed()}
        # Visibility lags: wait until it shows as many closed runs as SQL has outcomes.
        # The worker keeps running meanwhile: a workflow whose last activity emitted the
        # outcome closes only with its next workflow task.
        outcomes = sum(
            any(t in (ev.QUEUE_COMPLETED, ev.QUEUE_FAILED) for t, _ in chain)
            for chain in store.chains.values()
        )
        temporal = await observe.read_temporal(
            layout.temporal_address, f"chaos-{nonce}", outcomes, args.stall_timeout
        )
        for m in cluster.managed():
            outcome.sigterm_seconds[m.name] = await m.stop(SIGTERM_GRACE)
        topic = await observe.read_topic(layout.kafka_bootstrap, f"chaos-{nonce}", args.partitions)
        judge_run(outcome, emitted, store, temporal, topic)
        recoveries(outcome, cluster, store, t0_wall, load_end)
        outcome.wall_seconds = time.monotonic() - began
    finally:
        if supervisor is not None:
            supervisor.cancel()
        await _clean_up(cluster, layout, db, nonce, keep=args.keep, started=started)
    print(table(outcome), flush=True)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = section(outcome, args.label, command, when, _code_version())
    report = Path(args.report or layout.state_dir / "chaos" / f"report-{args.label}.md")
    await asyncio.to_thread(report.parent.mkdir, parents=True, exist_ok=True)
    await asyncio.to_thread(report.write_text, text)
    print(f"chaos: report in {report}", flush=True)
    if args.update_docs:
        await asyncio.to_thread(update_docs, DOCS, args.label, text)
        print(f"chaos: updated section '{args.label}' of {DOCS}", flush=True)
    return 1 if outcome.violations() else 0


def _code_version() -> str:
    result = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    branch = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "rev-parse", "--abbrev-ref", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return f"`{branch.stdout.strip()}` {result.stdout.strip()}".strip()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, required=True, help="derives the emissions and the faults")
    p.add_argument("--bootstraps", type=int, default=300)
    p.add_argument("--rate", type=float, default=3.0, help="bootstraps per second")
    p.add_argument("--faults", type=int, default=6, help="how many (>= 6: one of each kind)")
    p.add_argument("--replicas", type=int, default=1, choices=(1, 2))
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--temporal-outage", type=float, default=30.0, help="seconds Temporal is down")
    p.add_argument("--freeze-min", type=float, default=5.0)
    p.add_argument("--freeze-max", type=float, default=15.0)
    p.add_argument(
        "--restart-delay-max",
        type=float,
        default=2.0,
        help="a killed replica is restarted after up to this",
    )
    p.add_argument(
        "--stall-timeout",
        type=float,
        default=120.0,
        help="after the load, open jobs are stuck once no event came for this long",
    )
    p.add_argument(
        "--settle-max", type=float, default=3600.0, help="the longest wait for the last jobs"
    )
    p.add_argument("--label", default="short", help="the docs/reliability.md section to write")
    p.add_argument("--report", default=None, help="where to write the run's section")
    p.add_argument("--update-docs", action="store_true", help="update docs/reliability.md too")
    p.add_argument("--keep", action="store_true", help="keep the database and topics")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        plan = make_plan(
            Options(
                seed=args.seed,
                bootstraps=args.bootstraps,
                rate=args.rate,
                faults=args.faults,
                replicas=args.replicas,
                temporal_outage=args.temporal_outage,
                freeze_min=args.freeze_min,
                freeze_max=args.freeze_max,
                restart_delay_max=args.restart_delay_max,
            )
        )
    except ValueError as exc:
        print(f"chaos: {exc}", file=sys.stderr)
        return 2
    if plan.expected_fault_seconds() > plan.load_seconds:
        print(
            f"chaos: the faults take about {plan.expected_fault_seconds():.0f}s, the load "
            f"{plan.load_seconds:.0f}s: the last faults will come after the load",
            file=sys.stderr,
        )
    command = ".venv/bin/python -m bench.chaos " + shlex.join(argv)
    try:
        return asyncio.run(run(plan, args, command))
    except (RuntimeError, psycopg.Error, ServiceError) as exc:
        print(f"chaos: the run could not finish: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
