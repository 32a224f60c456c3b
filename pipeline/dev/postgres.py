"""PostgreSQL 15 from Debian's packages, as a cluster in the project's own folder."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

import psycopg

from pipeline.dev.errors import ServiceError
from pipeline.dev.layout import DevLayout
from pipeline.dev.process import log_tail, pid_alive, port_open

# Logical decoding needs wal_level=logical; the pipeline's reader, the tests' extra readers
# and pg_recvlogical in the benchmarks each take a slot and a walsender.
SERVER_SETTINGS = {
    "wal_level": "logical",
    "max_replication_slots": "32",
    "max_wal_senders": "32",
    "max_connections": "200",
    "listen_addresses": "127.0.0.1",
    # TCP only: a Unix socket path under a deep checkout can exceed the 107-byte limit.
    "unix_socket_directories": "",
    # A development cluster: durability across an OS crash is not worth the fsyncs here.
    # Commits are still WAL-logged in order, which is all logical decoding needs.
    "fsync": "off",
    "full_page_writes": "off",
    "shared_buffers": "256MB",
    "max_wal_size": "4GB",
    "wal_sender_timeout": "60s",
    # Commit times from the database itself (pg_xact_commit_timestamp), for the benchmarks.
    "track_commit_timestamp": "on",
}


def find_bindir() -> Path:
    """The bin folder of the newest PostgreSQL >= 15 on this machine."""
    override = os.environ.get("PIPELINE_PG_BINDIR")
    if override:
        return Path(override)
    root = Path("/usr/lib/postgresql")
    versions = sorted(
        (int(p.name) for p in root.glob("*") if p.name.isdigit() and int(p.name) >= 15),
        reverse=True,
    )
    for version in versions:
        bindir = root / str(version) / "bin"
        if (bindir / "postgres").exists():
            return bindir
    raise ServiceError(
        "PostgreSQL >= 15 server binaries not found under /usr/lib/postgresql: install "
        "Debian's 'postgresql' package (apt-get install postgresql), or set PIPELINE_PG_BINDIR"
    )


class Postgres:
    """A PostgreSQL cluster with wal_level=logical on its own port."""

    name = "postgres"

    def __init__(self, layout: DevLayout, settings: Mapping[str, str] | None = None) -> None:
        """``settings`` override SERVER_SETTINGS (a test's throwaway cluster, e.g. wal_level)."""
        self.layout = layout
        self.port = layout.pg_port
        self.settings = {**SERVER_SETTINGS, **(settings or {})}
        self.root = self._root_dir()
        self.data_dir = self.root / "data"
        self.log_file = self.root / "postgres.log"

    def _root_dir(self) -> Path:
        base = self.layout.state_dir / "postgres"
        if os.geteuid() != 0:
            return base
        # As root the server runs as the 'postgres' user, which must be able to reach the
        # folder; a checkout under a private home folder is not reachable, so fall back to
        # a per-checkout folder under /var/tmp.
        path = self.layout.state_dir
        while path != path.parent:
            if path.exists() and not os.stat(path).st_mode & 0o001:
                digest = hashlib.sha1(str(self.layout.state_dir).encode()).hexdigest()[:10]
                return Path("/var/tmp") / f"pipeline-postgres-{digest}"
            path = path.parent
        return base

    @property
    def _user(self) -> str | None:
        return "postgres" if os.geteuid() == 0 else None

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        cmd = argv if self._user is None else ["runuser", "-u", self._user, "--", *argv]
        return subprocess.run(cmd, capture_output=True, text=True, check=False)

    def pid(self) -> int | None:
        """The postmaster's pid if this cluster runs."""
        pid_file = self.data_dir / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if pid_alive(pid) else None

    def _init(self, bindir: Path) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            shutil.chown(self.root, self._user, self._user)
        result = self._run(
            [
                str(bindir / "initdb"),
                "-D",
                str(self.data_dir),
                "--auth=trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ]
        )
        if result.returncode != 0:
            raise ServiceError(f"initdb failed:\n{result.stdout}{result.stderr}")

    def start(self) -> bool:
        """Start the cluster (init it first if needed). False when it already ran."""
        if self.pid() is not None:
            return False
        if port_open(self.layout.host, self.port):
            raise ServiceError(
                f"port {self.port} is taken by another process: stop it or choose another "
                "port with PIPELINE_DEV_PG_PORT"
            )
        bindir = find_bindir()
        if not (self.data_dir / "PG_VERSION").exists():
            self._init(bindir)
        options = " ".join(f"-c {k}={v!s}" if v else f"-c {k}=''" for k, v in self.settings.items())
        result = self._run(
            [
                str(bindir / "pg_ctl"),
                "start",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                "60",
                "-o",
                f"-c port={self.port} {options}",
            ]
        )
        if result.returncode != 0:
            raise ServiceError(
                f"PostgreSQL did not start:\n{result.stdout}{result.stderr}{log_tail(self.log_file)}"
            )
        return True

    def wait_healthy(self, timeout: float = 60.0) -> None:
        """Wait until the server accepts connections, then make sure the database exists."""
        admin = f"postgresql://postgres@{self.layout.host}:{self.port}/postgres"
        last: Exception | None = None

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
                    exists = conn.execute(
                        "SELECT 1 FROM pg_database WHERE datname = 'pipeline'"
                    ).fetchone()
                    if exists is None:
                        conn.execute("CREATE DATABASE pipeline")
                    return
            except psycopg.OperationalError as exc:
                last = exc
                time.sleep(0.3)
        raise ServiceError(f"PostgreSQL not reachable on port {self.port}: {last}")

    def healthy(self) -> bool:
        return self.pid() is not None and port_open(self.layout.host, self.port)

    def stop(self) -> bool:
        """Stop the cluster if it runs. False when it was not running."""
        if self.pid() is None:
            return False
        result = self._run(
            [str(find_bindir() / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "fast", "-w"]
        )
        if result.returncode != 0:
            raise ServiceError(f"pg_ctl stop failed:\n{result.stdout}{result.stderr}")
        return True
