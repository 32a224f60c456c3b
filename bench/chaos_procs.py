"""The processes a chaos run starts and the faults it injects into them.

Only this checkout's processes are ever signalled: the `pipeline run` replicas and the
`pipeline worker` the harness spawned itself (pid files ``chaos-*.pid`` under
``$PIPELINE_DEV_DIR/run``), and the local services of ``pipeline dev`` found through
their own pid files (Kafka, Temporal) or data folder (PostgreSQL's postmaster.pid).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.dev.errors import ServiceError
from pipeline.dev.kafka import Kafka
from pipeline.dev.layout import DevLayout
from pipeline.dev.postgres import Postgres, find_bindir
from pipeline.dev.process import pid_alive, read_pid
from pipeline.dev.temporal import Temporal

# How long a restarted service may take to answer. Never on speed: at load average 21
# a SIGKILLed broker answered again 186 s after its restart, and a 180 s deadline ended
# a long run there (docs/reliability.md).
SERVICE_TIMEOUT = 600.0


def pipeline_cli() -> str:
    beside = Path(sys.executable).parent / "pipeline"
    return str(beside) if beside.exists() else "pipeline"


@dataclass
class Managed:
    """A `pipeline` process the harness owns: started, killed, frozen and restarted by it.

    ``down`` is set while the harness keeps it down on purpose; the supervisor restarts
    any other exit (as Kubernetes would) and counts it.
    """

    name: str
    args: list[str]
    env: dict[str, str]
    log_file: Path
    pid_file: Path
    proc: subprocess.Popen[bytes] | None = None
    down: bool = False
    unexpected_exits: list[int] = field(default_factory=list)

    def start(self) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            log.write(f"\n==== chaos: start at {time.time():.3f}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [pipeline_cli(), *self.args],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{self.proc.pid}\n")
        self.down = False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    async def kill(self) -> None:
        """SIGKILL, and wait until it is gone."""
        self.down = True
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            await asyncio.to_thread(self.proc.wait)

    async def stop(self, grace: float) -> float | None:
        """SIGTERM; seconds until it exited, or None when it needed a SIGKILL after grace."""
        self.down = True
        if not self.alive() or self.proc is None:
            return 0.0
        self.signal(signal.SIGCONT)
        began = time.monotonic()
        self.signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.to_thread(self.proc.wait), grace)
        except TimeoutError:
            self.signal(signal.SIGKILL)
            await asyncio.to_thread(self.proc.wait)
            return None
        finally:
            self.pid_file.unlink(missing_ok=True)
        return time.monotonic() - began

    def web_port(self) -> int:
        return int(self.env["PIPELINE_WEB_PORT"])

    def reads_slot(self) -> bool:
        """Whether this replica says (on /metrics) it holds the replication slot."""
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.web_port()}/metrics", timeout=3
            ) as response:
                page = response.read().decode()
        except OSError:
            return False
        return any(line.strip() == "pipeline_reader_active 1.0" for line in page.splitlines())


def kill_leftovers(run_dir: Path) -> list[int]:
    """SIGKILL processes a previous, interrupted chaos run of this checkout left behind."""
    killed = []
    for pid_file in run_dir.glob("chaos-*.pid"):
        pid = read_pid(pid_file)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            killed.append(pid)
        pid_file.unlink(missing_ok=True)
    return killed


def _start_until_healthy(service: Kafka | Temporal, what: str) -> None:
    """Start ``service`` and wait until healthy, starting it again while it dies at once.

    The dev ports lie in Linux's ephemeral range: while the server is down, a client
    retrying ``127.0.0.1:port`` can get that very port as its source port and connect
    to itself, so the restarted server cannot bind it for a moment. Retried, not failed.
    """
    deadline = time.monotonic() + SERVICE_TIMEOUT
    while time.monotonic() < deadline:
        if service.pid() is None:
            try:
                service.start()
            except ServiceError:  # the port is still taken
                time.sleep(0.5)
                continue
        if service.healthy():
            return
        time.sleep(0.3)
    raise RuntimeError(f"{what} not healthy {SERVICE_TIMEOUT:.0f}s after its restart")


def _sigkill_pid(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    while pid_alive(pid):
        time.sleep(0.05)


def _sigkill_service(service: Kafka | Temporal, what: str) -> None:
    """SIGKILL a service of this checkout (by its pid file) and forget its pid file."""
    pid = service.pid()
    if pid is None:
        raise RuntimeError(f"{what} of this checkout is not running")
    _sigkill_pid(pid)
    service.pid_file.unlink(missing_ok=True)


async def restart_kafka(layout: DevLayout) -> None:
    """SIGKILL the broker (ours, by its pid file) and start it again; returns once healthy."""
    kafka = Kafka(layout)
    await asyncio.to_thread(_sigkill_service, kafka, "the Kafka broker")
    await asyncio.to_thread(_start_until_healthy, kafka, "the Kafka broker")


async def kill_temporal(layout: DevLayout) -> None:
    await asyncio.to_thread(_sigkill_service, Temporal(layout), "the Temporal dev server")


async def start_temporal(layout: DevLayout) -> None:
    """Start the dev server again on its SQLite file; returns once healthy."""
    await asyncio.to_thread(_start_until_healthy, Temporal(layout), "the Temporal dev server")


async def restart_postgres(layout: DevLayout) -> None:
    """``pg_ctl restart -m immediate`` (a crash and crash recovery); returns once it
    accepts connections."""
    postgres = Postgres(layout)
    if postgres.pid() is None:
        raise RuntimeError("the PostgreSQL cluster of this checkout is not running")
    argv = [
        str(find_bindir() / "pg_ctl"),
        "restart",
        "-D",
        str(postgres.data_dir),
        "-m",
        "immediate",
        "-w",
        "-t",
        str(int(SERVICE_TIMEOUT)),
        # With no log file the new postmaster would keep this process's pipe open.
        "-l",
        str(postgres.log_file),
    ]
    if os.geteuid() == 0:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    result = await asyncio.to_thread(
        subprocess.run, argv, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        # The stop half always works with -m immediate; the start half can meet its port
        # taken for a moment (see _start_until_healthy): start it again until it binds.
        await asyncio.to_thread(_start_postgres, postgres, f"{result.stdout}{result.stderr}")
    await asyncio.to_thread(postgres.wait_healthy, SERVICE_TIMEOUT)


def _start_postgres(postgres: Postgres, first_error: str) -> None:
    deadline = time.monotonic() + SERVICE_TIMEOUT
    while postgres.pid() is None:
        try:
            postgres.start()
        except ServiceError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start again: {first_error}{exc}") from exc
            time.sleep(0.5)
