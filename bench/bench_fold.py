"""CPU per event of the projection path of ``pipeline run``: decode + fold + transaction.

    .venv/bin/python -m bench.bench_fold --events 20000 --rounds 3
    .venv/bin/python -m bench.bench_fold --code /path/to/other/checkout   # the baseline

What it runs is ``AgentRuntime.project`` (the method the projection lane calls), on
batches of ``--batch`` Kafka records, against this checkout's dev PostgreSQL
(``pipeline dev up``), each run in a fresh migrated database of its own. The records are
the drain's mix (bench/drain_fill.py, one event per transaction written with plain SQL:
one in 1,000 an ``organization.bootstrap.initiated``, followed here by its
``workflow.queue.pending`` / ``claimed`` / ``workflow_started``; one in ten a
``workflow.queue.completed``; the rest ``invitation.email.sent``), read back from the
store and shaped as the reader writes them (the value built by
``replication.record_value.join_fields`` from the columns' JSON, the ``commit_lsn``,
``idx``, ``xid``, ``commit_ts`` and ``event_type`` headers, the stream id as the key, the
partition from ``replication.partitioner``).

Each run is a child process with ``PYTHONPATH`` set to one checkout, so the same records
go through two versions of the code: ``--code DIR`` (default: a ``git worktree`` of
``--base``, origin/main, made for the run and removed after it, with this checkout's mypyc
modules copied in when its replication/ sources are the same) and this checkout, interleaved, ``--rounds``
times. A child reports its own CPU time (``time.process_time``) and wall time over every
batch but the first (imports, the contract's compilation, the connections); the parent
prints each run, the medians and the ratio, with the load averages around each run. The
server's CPU (the other core) is not counted: the goal is the client's CPU per event.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PARTITIONS = 8
_CHAIN_SQL = """
CREATE PROCEDURE pg_temp.bench_chain() LANGUAGE plpgsql AS $$
DECLARE
    e record;
    wf text;
BEGIN
    FOR e IN SELECT id, stream_id, event_data FROM domain_events
             WHERE event_type = 'organization.bootstrap.initiated' ORDER BY created_at LOOP
        wf := 'org-bootstrap-' || e.stream_id;
        PERFORM api.emit_domain_event(
            p_stream_id => e.stream_id, p_stream_type => 'organization',
            p_event_type => 'workflow.queue.pending',
            p_event_data => jsonb_build_object('job_id', e.id,
                'workflow_type', 'OrganizationBootstrapWorkflow', 'workflow_id', wf,
                'source_event_id', e.id, 'input', e.event_data),
            p_event_metadata => jsonb_build_object('source', 'bench-drain', 'causation_id', e.id),
            p_idempotency_key => 'bench-chain:pending:' || e.id);
        PERFORM api.emit_domain_event(
            p_stream_id => e.stream_id, p_stream_type => 'organization',
            p_event_type => 'workflow.queue.claimed',
            p_event_data => jsonb_build_object('job_id', e.id, 'workflow_id', wf,
                                               'worker_id', 'bench-worker'),
            p_event_metadata => jsonb_build_object('source', 'bench-drain', 'causation_id', e.id),
            p_idempotency_key => 'bench-chain:claimed:' || e.id);
        PERFORM api.emit_domain_event(
            p_stream_id => e.stream_id, p_stream_type => 'organization',
            p_event_type => 'organization.bootstrap.workflow_started',
            p_event_data => jsonb_build_object('job_id', e.id, 'workflow_id', wf,
                                               'run_id', gen_random_uuid()::text),
            p_event_metadata => jsonb_build_object('source', 'bench-drain', 'causation_id', e.id),
            p_idempotency_key => 'bench-chain:started:' || e.id);
        COMMIT;
    END LOOP;
END;
$$
"""
_ROWS_SQL = (
    "SELECT id::text, stream_id::text, stream_type, stream_version, event_type, "
    "event_data::text, event_metadata::text, idempotency_key, created_at, xmin::text::bigint "
    "FROM domain_events ORDER BY created_at, id"
)


# ---- the parent: records, databases, the interleaved runs ----------------------------


def _admin_dsn(host: str, port: int, db: str = "postgres") -> str:
    return f"postgresql://postgres@{host}:{port}/{db}"


def make_records(dsn: str, events: int, path: Path) -> dict[str, int]:
    """Fill ``dsn`` with the drain's mix and write the records, one JSON line each."""
    import orjson
    import psycopg

    from bench.drain_fill import mixed_backlog
    from replication.lsn import LSN
    from replication.partitioner import partition_for
    from replication.record_value import join_fields

    mixed_backlog(dsn, events, 1000)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(_CHAIN_SQL)
        conn.execute("CALL pg_temp.bench_chain()")
        rows = conn.execute(_ROWS_SQL).fetchall()
    offsets = [0] * PARTITIONS
    mix: dict[str, int] = {}
    lsn = 0x1_0000_0000
    with path.open("wb") as out:
        for eid, sid, stype, version, etype, data, meta, ikey, created, xid in rows:
            lsn += 0x1F8  # one commit per event, as the fill writes them
            created_text = created.astimezone(UTC).isoformat().encode()
            value = join_fields(
                [
                    eid.encode(),
                    sid.encode(),
                    orjson.dumps(stype),
                    b"%d" % version,
                    orjson.dumps(etype),
                    data.encode(),
                    meta.encode(),
                    orjson.dumps(ikey),
                    b'"%s"' % created_text,
                ]
            )
            key = sid.encode()
            partition = partition_for(key, PARTITIONS)
            record = {
                "partition": partition,
                "offset": offsets[partition],
                "key": sid,
                "value": value.decode(),
                "headers": [
                    ["commit_lsn", str(LSN(lsn))],
                    ["idx", "0"],
                    ["xid", str(xid)],
                    ["commit_ts", created_text.decode()],
                    ["event_type", etype],
                ],
            }
            offsets[partition] += 1
            mix[etype] = mix.get(etype, 0) + 1
            out.write(orjson.dumps(record) + b"\n")
    return mix


def _loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _base_worktree(ref: str) -> Path:
    """A detached worktree of ``ref`` under .cache/, with this checkout's mypyc modules
    when its replication/ sources are the same (else it runs them from source)."""
    where = ROOT / ".cache" / "bench_fold" / "base"
    if where.exists():
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(where)], check=False
        )
        shutil.rmtree(where, ignore_errors=True)
    subprocess.run(["git", "-C", str(ROOT), "worktree", "prune"], check=True)
    where.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), ref],
        check=True,
        capture_output=True,
    )
    same = subprocess.run(
        ["git", "-C", str(ROOT), "diff", "--quiet", ref, "--", "replication/"], check=False
    )
    if same.returncode == 0:
        for built in (ROOT / "replication").iterdir():
            if built.suffix == ".so" or built.name == "_native.json":
                shutil.copy2(built, where / "replication" / built.name)
    return where


def _run_child(code: Path, dsn: str, records: Path, batch: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(code)}
    env.pop("PIPELINE_CONTRACT_PATH", None)  # each checkout's own contract
    command = [sys.executable, str(Path(__file__).resolve()), "--child", dsn, str(records)]
    proc = subprocess.run(
        [*command, "--batch", str(batch)],
        env=env,
        cwd=str(code),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child on {code} failed:\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--events", type=int, default=20_000, help="events of the drain's mix")
    p.add_argument("--batch", type=int, default=2000, help="records per project() call")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--code", default=None, help="the baseline checkout (default: --base)")
    p.add_argument("--base", default="origin/main", help="git ref of the baseline worktree")
    p.add_argument("--child", nargs=2, metavar=("DSN", "RECORDS"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not args.child and args.events < 2 * args.batch:
        p.error("--events must be at least two batches (the first one is not timed)")
    if args.child:
        print(json.dumps(asyncio.run(child(args.child[0], Path(args.child[1]), args.batch))))
        return 0

    import psycopg

    from pipeline.dev import services
    from pipeline.dev.layout import load_layout
    from pipeline.migrate import migrate

    layout = load_layout()
    services.up(layout)
    admin = _admin_dsn(layout.host, layout.pg_port)
    tag = uuid.uuid4().hex[:8]
    source, template = f"bench_fold_src_{tag}", f"bench_fold_tpl_{tag}"
    base = Path(args.code).resolve() if args.code else _base_worktree(args.base)
    made: list[str] = []

    def create(name: str, template_of: str | None = None) -> str:
        with psycopg.connect(admin, autocommit=True) as conn:
            extra = f' TEMPLATE "{template_of}"' if template_of else ""
            conn.execute(f'CREATE DATABASE "{name}"{extra}')
        made.append(name)
        return _admin_dsn(layout.host, layout.pg_port, name)

    def drop(name: str) -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        made.remove(name)

    results: dict[str, list[dict[str, Any]]] = {"base": [], "this": []}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            src = create(source)
            migrate(src)
            records = Path(tmp) / "records.jsonl"
            started = time.monotonic()
            mix = make_records(src, args.events, records)
            drop(source)
            migrate(create(template))
            total = sum(mix.values())
            print(f"records: {total} ({time.monotonic() - started:.0f} s to make)")
            for kind, count in sorted(mix.items(), key=lambda kv: -kv[1]):
                print(f"  {count:>7}  {kind}")
            print(f"baseline: {base}; this: {ROOT}; batch {args.batch}")
            print(
                f"{'round':>5} {'code':>5} {'events':>7} {'cpu µs/ev':>10} "
                f"{'wall ev/s':>10} {'applied':>8}  load before / after"
            )
            for rnd in range(1, args.rounds + 1):
                # Interleaved, the order flipped each round.
                order = [("base", base), ("this", ROOT)]
                if rnd % 2 == 0:
                    order.reverse()
                for label, code in order:
                    name = f"bench_fold_run_{tag}_{label}_{rnd}"
                    dsn = create(name, template)
                    before = _loadavg()
                    res = _run_child(code, dsn, records, args.batch)
                    res["load"] = f"{before} / {_loadavg()}"
                    drop(name)
                    results[label].append(res)
                    print(
                        f"{rnd:>5} {label:>5} {res['events']:>7} "
                        f"{res['cpu_s'] / res['events'] * 1e6:>10.1f} "
                        f"{res['events'] / res['wall_s']:>10.0f} {res['applied']:>8}  "
                        f"{res['load']}",
                        flush=True,
                    )
        finally:
            for name in list(made):
                drop(name)
            if not args.code:  # the worktree this run made
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)],
                    check=False,
                )
    cpu = {label: [r["cpu_s"] / r["events"] * 1e6 for r in runs] for label, runs in results.items()}
    rate = {label: [r["events"] / r["wall_s"] for r in runs] for label, runs in results.items()}
    for label in ("base", "this"):
        print(
            f"{label}: CPU µs/event median {statistics.median(cpu[label]):.1f} "
            f"min {min(cpu[label]):.1f}; events/s median {statistics.median(rate[label]):.0f}"
        )
    print(
        f"this/base: CPU per event median {statistics.median(cpu['this']) / statistics.median(cpu['base']):.2f}, "
        f"min {min(cpu['this']) / min(cpu['base']):.2f}; events/s median "
        f"{statistics.median(rate['this']) / statistics.median(rate['base']):.2f}"
    )
    # The same rows either way (every timestamp comes from the events).
    rows = {
        label: {(r["applied"], r["rows_md5"], r["dead"]) for r in runs}
        for label, runs in results.items()
    }
    print(f"rows (count, md5, dead letters): {rows}")
    if rows["base"] != rows["this"]:
        print("WARNING: the two checkouts wrote different rows")
    return 0


# ---- the child: one checkout's AgentRuntime.project over the records -----------------


async def child(dsn: str, path: Path, batch: int) -> dict[str, Any]:
    """Project the records in batches; CPU and wall time of all batches but the first."""
    import orjson

    from pipeline.agents import effects
    from pipeline.agents.runtime import AgentRuntime, Record

    records = []
    with path.open("rb") as f:
        for line in f:
            r = orjson.loads(line)
            records.append(
                Record(
                    "domain-events",
                    r["partition"],
                    r["offset"],
                    r["key"].encode(),
                    r["value"].encode(),
                    tuple((name, value.encode()) for name, value in r["headers"]),
                )
            )
    dead: list[Record] = []

    async def dead_letter(record: Record, headers: list[tuple[str, bytes]]) -> None:
        dead.append(record)

    runtime = AgentRuntime(
        worker_id="bench-fold",
        consumer="bench-fold",
        enqueue_db=effects.Database(dsn, "enqueue"),
        starter_db=effects.Database(dsn, "starter"),
        projection_db=effects.Database(dsn, "projection"),
        temporal=effects.WorkflowStartClient("127.0.0.1:1", "default", "bench-fold"),
        dead_letter=dead_letter,
    )
    batches = [records[i : i + batch] for i in range(0, len(records), batch)]
    await runtime.project(batches[0])
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for b in batches[1:]:
        await runtime.project(b)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    conn = await effects.Database(dsn, "count").connection()
    counts = []
    for table in ("workflow_queue_projection", "organizations_projection", "pipeline_checkpoints"):
        cur = await conn.execute(f"SELECT count(*) FROM {table}")
        row = await cur.fetchone()
        counts.append(int(row[0]) if row else -1)
    digests = []
    for table, order in (
        ("workflow_queue_projection", "job_id"),
        ("organizations_projection", "id"),
    ):
        cur = await conn.execute(
            f"SELECT md5(string_agg(t::text, ',' ORDER BY {order})) FROM {table} t"
        )
        row = await cur.fetchone()
        digests.append(str(row[0]) if row else "")
    await conn.close()
    await runtime.close()
    return {
        "events": sum(len(b) for b in batches[1:]),
        "cpu_s": cpu,
        "wall_s": wall,
        "dead": len(dead),
        "applied": counts[0] + counts[1],
        "checkpoints": counts[2],
        "rows_md5": "/".join(d[:8] for d in digests),
    }


if __name__ == "__main__":
    sys.exit(main())
