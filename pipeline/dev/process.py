"""Process bookkeeping for the local services: pid files, port probes, clean stops."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pipeline.dev.errors import ServiceError


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_bindable(host: str, port: int) -> bool:
    """True when a server could listen on host:port now.

    Probed the way servers bind (SO_REUSEADDR), so it fails when their bind would: on a
    listener, or on an outgoing connection that the kernel gave this port as its local one
    (our default ports lie in Linux's ephemeral range).
    """
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists (and is not a zombie of ours)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        # Field 3 is the state; 'Z' is a zombie that only waits to be reaped.
        return stat.read_text().split(") ", 1)[1][0] != "Z"
    return True


def read_pid(pid_file: Path) -> int | None:
    """The pid recorded in pid_file if that process still runs, else None."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid) else None


def spawn(
    argv: Sequence[str],
    *,
    log_file: Path,
    pid_file: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> int:
    """Start argv detached in its own session, output to log_file, pid into pid_file."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    cmd = list(argv)
    if user is not None:
        cmd = ["runuser", "-u", user, "--", *cmd]
    with log_file.open("ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    pid_file.write_text(f"{proc.pid}\n")
    return proc.pid


def stop_pid(pid: int, *, timeout: float = 20.0) -> None:
    """SIGTERM the process group of pid, then SIGKILL what is left after timeout."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return
            time.sleep(0.1)
    if pid_alive(pid):
        raise ServiceError(f"process {pid} did not stop after SIGKILL")


def wait_until(
    check: Callable[[], bool],
    *,
    what: str,
    timeout: float,
    log_file: Path | None = None,
    alive: Callable[[], bool] | None = None,
) -> None:
    """Poll check() until it is true; fail with the log's tail if it never is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if alive is not None and not alive():
            raise ServiceError(f"{what} exited during start-up{log_tail(log_file)}")
        time.sleep(0.2)
    raise ServiceError(f"{what} was not healthy after {timeout:.0f}s{log_tail(log_file)}")


def log_tail(log_file: Path | None, lines: int = 25) -> str:
    """The last lines of a log file, formatted to append to an error message."""
    if log_file is None or not log_file.exists():
        return ""
    tail = log_file.read_text(errors="replace").splitlines()[-lines:]
    return f"\n--- last lines of {log_file} ---\n" + "\n".join(tail)


class SpawnedService:
    """A service this project spawned itself and tracks by a pid file.

    Subclasses set ``name``, ``port``, ``log_file`` and ``pid_file`` and implement
    ``start`` and ``healthy``; ``pid`` and ``stop`` only ever touch the process recorded
    in the pid file, so `down` stops exactly what `up` started.
    """

    name: str
    port: int
    log_file: Path
    pid_file: Path
    stop_timeout: float = 20.0

    def pid(self) -> int | None:
        """The pid of our process, if it still runs."""
        return read_pid(self.pid_file)

    def listening(self, host: str) -> bool:
        """Our process runs and its port accepts connections (healthy may ask more)."""
        return self.pid() is not None and port_open(host, self.port)

    def spawn_logged(self, argv: Sequence[str]) -> int:
        """Start ``argv`` detached with our log and pid files (see :func:`spawn`)."""
        return spawn(argv, log_file=self.log_file, pid_file=self.pid_file)

    def stop(self) -> bool:
        """Stop our process if it runs; False when it was not running."""
        pid = self.pid()
        if pid is None:
            return False
        stop_pid(pid, timeout=self.stop_timeout)
        self.pid_file.unlink(missing_ok=True)
        return True

    def ports_free(self, host: str, ports: tuple[int, ...], hint: str) -> None:
        """Fail with a clear message when one of ports is taken by another process."""
        for port in ports:
            if port_open(host, port):
                raise ServiceError(
                    f"port {port} is taken by another process: stop it or choose another "
                    f"port with {hint}"
                )
            if not port_bindable(host, port):
                raise ServiceError(
                    f"port {port} is in use by another socket (nothing listens there; "
                    f"perhaps a connection's local port): wait for it to close or choose "
                    f"another port with {hint}"
                )
