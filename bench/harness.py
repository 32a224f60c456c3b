"""The edges of a benchmark run: fresh databases, unique names, child processes, RSS.

Every measured path gets its own database (``bench_<hex>``), replication slot, topics,
consumer group and Temporal task queue, so runs never see each other's data and nothing
of the project's own ``pipeline`` database is touched. Everything is dropped afterwards.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import psycopg

from pipeline.dev import services
from pipeline.dev.layout import DevLayout, load_layout
from pipeline.migrate import migrate

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"


@dataclass(frozen=True, slots=True)
class Names:
    """Unique names of one measured path (slot, topics, group, task queue)."""

    run_id: str

    @classmethod
    def fresh(cls, label: str) -> Names:
        return cls(f"{label}_{uuid.uuid4().hex[:8]}")

    @property
    def database(self) -> str:
        return f"bench_{self.run_id}"

    @property
    def slot(self) -> str:
        return f"bench_{self.run_id}"

    @property
    def probe_slot(self) -> str:
        return f"bench_probe_{self.run_id}"

    @property
    def topic(self) -> str:
        return f"bench-{self.run_id}"

    @property
    def dead_letter_topic(self) -> str:
        return f"bench-{self.run_id}-dlq"

    @property
    def group(self) -> str:
        return f"bench-{self.run_id}"

    @property
    def task_queue(self) -> str:
        return f"bench-{self.run_id}"


@dataclass(frozen=True, slots=True)
class Services:
    """The local services, started (idempotently) by :func:`ensure_services`.

    ``temporal_address``, when set, replaces the dev server (``bench.temporal_postgres``:
    Temporal's own server on PostgreSQL) for every client and child process."""

    layout: DevLayout
    temporal_address: str | None = None

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://postgres@{self.layout.host}:{self.layout.pg_port}/postgres"

    def dsn(self, database: str) -> str:
        return f"postgresql://postgres@{self.layout.host}:{self.layout.pg_port}/{database}"

    @property
    def kafka(self) -> str:
        return self.layout.kafka_bootstrap

    @property
    def temporal(self) -> str:
        return self.temporal_address or self.layout.temporal_address

    def env(self, names: Names, **extra: str) -> dict[str, str]:
        """Environment of a child process pointed at this path's database and names."""
        data_dir = RESULTS / "tmp" / names.run_id
        data_dir.mkdir(parents=True, exist_ok=True)
        return {
            **os.environ,
            **self.layout.env(),
            "PIPELINE_TEMPORAL_ADDRESS": self.temporal,
            "PIPELINE_DATABASE_URL": self.dsn(names.database),
            "PIPELINE_SLOT_NAME": names.slot,
            "PIPELINE_TOPIC": names.topic,
            "PIPELINE_DEAD_LETTER_TOPIC": names.dead_letter_topic,
            "PIPELINE_CONSUMER_GROUP": names.group,
            "PIPELINE_TEMPORAL_TASK_QUEUE": names.task_queue,
            "PIPELINE_TOPIC_PARTITIONS": "8",
            "PIPELINE_WEB_PORT": str(free_port()),
            "PIPELINE_DATA_DIR": str(data_dir / "faust"),
            "PIPELINE_EMAIL_OUTBOX_DIR": str(data_dir / "outbox"),
            "PIPELINE_DNS_PROVIDER": "local",
            "PIPELINE_EMAIL_PROVIDER": "local",
            **extra,
        }


def ensure_services() -> Services:
    """Start PostgreSQL, Kafka and Temporal if they are not running (never stops them)."""
    layout = load_layout()
    services.up(layout)
    svc = Services(layout)
    warn_leftovers(svc)
    return svc


# Inactive replication slots of bench databases, with the WAL each holds back.
_LEFTOVER_SLOTS = (
    "SELECT slot_name, database, "
    "pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)) "
    "FROM pg_replication_slots WHERE NOT active AND database LIKE 'bench\\_%' ORDER BY 1"
)


def warn_leftovers(svc: Services) -> None:
    """Say so when a killed run left its database and slots behind.

    Such a slot holds back WAL for ever (16 GB in one dev cluster, 2026-12-03) until the
    disk fills. Not dropped here: another run may be using the cluster this moment; the
    warning names what to drop.
    """
    with psycopg.connect(svc.admin_dsn, autocommit=True) as conn:
        rows = conn.execute(_LEFTOVER_SLOTS).fetchall()
    for slot, database, held in rows:
        log.warning(
            "slot %s of database %s (left by a killed run?) holds %s of WAL; if no run is "
            "using it, drop both: bench.harness.drop_database(svc, %r)",
            slot,
            database,
            held,
            database,
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def fresh_database(svc: Services, names: Names) -> Iterator[str]:
    """A new, migrated database for one path; dropped (with its slots) on exit."""
    with psycopg.connect(svc.admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{names.database}"')
    dsn = svc.dsn(names.database)
    try:
        migrate(dsn)
        yield dsn
    finally:
        drop_database(svc, names.database)


def drop_database(svc: Services, database: str) -> None:
    with psycopg.connect(svc.admin_dsn, autocommit=True) as conn:
        for _ in range(50):
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            )
            slots = conn.execute(
                "SELECT slot_name FROM pg_replication_slots WHERE database = %s AND NOT active",
                (database,),
            ).fetchall()
            for (slot,) in slots:
                conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            busy = conn.execute(
                "SELECT count(*) FROM pg_replication_slots WHERE database = %s", (database,)
            ).fetchone()
            if busy is not None and busy[0] == 0:
                break
            time.sleep(0.2)
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def wait_for_slot_active(
    dsn: str, slot: str, procs: list[subprocess.Popen[bytes]], timeout: float = 120
) -> None:
    """Until a reader holds ``slot``; raises if one of ``procs`` dies meanwhile."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            check_alive(procs)
            row = conn.execute(
                "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)
            ).fetchone()
            if row is not None and row[0]:
                return
            time.sleep(0.2)
    raise RuntimeError(f"no reader took slot={slot} within {timeout:.0f}s")


def wait_for_log(
    path: Path, text: str, procs: list[subprocess.Popen[bytes]], timeout: float = 60
) -> None:
    """Until ``text`` appears in a child's log (its ready line)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        check_alive(procs)
        if path.exists() and text in path.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{path} did not say {text!r} within {timeout:.0f}s")


def check_alive(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}: see its log")


def start_process(
    name: str, argv: list[str], env: Mapping[str, str], log_dir: Path
) -> subprocess.Popen[bytes]:
    """A child process in its own session, its output in ``log_dir/name.log``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / f"{name}.log").open("ab") as out:
        return subprocess.Popen(
            argv, env=dict(env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def pipeline_argv(*args: str) -> list[str]:
    beside = Path(sys.executable).parent / "pipeline"
    return [str(beside) if beside.exists() else "pipeline", *args]


def python_argv(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` — only this process, by its id."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _descendants(pid: int) -> list[int]:
    """The live children of ``pid``, theirs, and so on (``pipeline run``'s reader child)."""
    found: list[int] = []
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            text = Path(f"/proc/{current}/task/{current}/children").read_text()
        except OSError:
            continue
        kids = [int(k) for k in text.split()]
        found.extend(kids)
        stack.extend(kids)
    return found


def _own_peak_rss_mib(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return None


def peak_rss_mib(pid: int) -> float | None:
    """VmHWM of a live process plus that of each live descendant, in MiB (None if it is
    gone): an upper bound of the tree's peak (each one's peak, added, whenever it was)."""
    own = _own_peak_rss_mib(pid)
    if own is None:
        return None
    return own + sum(_own_peak_rss_mib(kid) or 0.0 for kid in _descendants(pid))


def _own_cpu_seconds(pid: int, *, reaped: bool) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = int(fields[11]) + int(fields[12])
    if reaped:  # children that exited and were waited for
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a live process and its descendants, live or reaped."""
    own = _own_cpu_seconds(pid, reaped=True)
    if own is None:
        return None
    return own + sum(_own_cpu_seconds(kid, reaped=True) or 0.0 for kid in _descendants(pid))
