"""A real PgBouncer (Debian's ``pgbouncer`` package) in front of the test PostgreSQL.

``with pgbouncer(upstream_port=...) as bouncer:`` writes a config file in a temporary
folder (``auth_type=trust``, ``pool_mode=transaction``, every database forwarded to the
upstream server), starts PgBouncer as a subprocess, waits until its port answers, yields
a :class:`PgBouncer` (``bouncer.dsn("dbname")``) and stops it afterwards.

``port=None`` picks a free port; ``port=6432`` (PgBouncer's default) is shared by every
checkout on the machine, so that port is taken under a machine-wide file lock and two
test sessions wait for each other instead of colliding. As root, PgBouncer (which refuses
to run as root) runs as the ``postgres`` user, like the dev PostgreSQL.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.integration.ports import free_port

DEFAULT_PORT = 6432
LOCK_DIR = Path(tempfile.gettempdir())
START_TIMEOUT_S = 15.0


@dataclass(frozen=True, slots=True)
class PgBouncer:
    host: str
    port: int
    pid: int
    config: Path
    log_file: Path

    def dsn(self, dbname: str, user: str = "postgres") -> str:
        return f"postgresql://{user}@{self.host}:{self.port}/{dbname}"


def find_binary() -> str:
    """The pgbouncer executable (Debian puts it in /usr/sbin, often not on PATH)."""
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")
    if found is None:
        raise RuntimeError(
            "pgbouncer is not installed: run scripts/setup.sh (apt-get install pgbouncer)"
        )
    return found


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def _port_lock(port: int) -> Iterator[None]:
    """A machine-wide lock on a fixed port (other checkouts run the same tests)."""
    with open(LOCK_DIR / f"pipeline-pgbouncer-{port}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _config(upstream_host: str, upstream_port: int, port: int, folder: Path) -> str:
    return f"""\
[databases]
* = host={upstream_host} port={upstream_port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {folder / "userlist.txt"}
pool_mode = transaction
max_client_conn = 100
default_pool_size = 10
server_reset_query =
ignore_startup_parameters = extra_float_digits
admin_users = postgres
logfile = {folder / "pgbouncer.log"}
pidfile = {folder / "pgbouncer.pid"}
"""


@contextlib.contextmanager
def pgbouncer(
    *, upstream_port: int, upstream_host: str = "127.0.0.1", port: int | None = None
) -> Iterator[PgBouncer]:
    """Run PgBouncer (transaction mode) in front of upstream; stop it on exit."""
    binary = find_binary()
    fixed = port is not None
    chosen = port if port is not None else free_port()
    lock = _port_lock(chosen) if fixed else contextlib.nullcontext()
    with lock, tempfile.TemporaryDirectory(prefix="pipeline-pgbouncer-") as tmp:
        folder = Path(tmp)
        config = folder / "pgbouncer.ini"
        config.write_text(_config(upstream_host, upstream_port, chosen, folder))
        (folder / "userlist.txt").write_text('"postgres" ""\n')
        argv = [binary, str(config)]
        if os.geteuid() == 0:
            os.chmod(folder, 0o777)  # PgBouncer, as 'postgres', writes its log and pid here
            argv = [binary, "-u", "postgres", str(config)]
        if _answers("127.0.0.1", chosen):
            raise RuntimeError(f"port {chosen} is already taken: cannot start PgBouncer there")
        proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        log_file = folder / "pgbouncer.log"
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not _answers("127.0.0.1", chosen):
                if proc.poll() is not None or time.monotonic() > deadline:
                    stderr = proc.stderr.read().decode() if proc.stderr else ""
                    log = log_file.read_text() if log_file.exists() else ""
                    raise RuntimeError(
                        f"PgBouncer did not start on port {chosen}: {stderr}{log}".strip()
                    )
                time.sleep(0.05)
            yield PgBouncer("127.0.0.1", chosen, proc.pid, config, log_file)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # PgBouncer's "shut down now"
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()
