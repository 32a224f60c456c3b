"""What the command line imports before a command runs (issue 14: restart time).

A restarted ``pipeline run`` spends most of its way back to steady state importing
modules (about 2 s of CPU; docs/reliability.md). ``pipeline.cli`` is imported by every
command before it parses its arguments, so what it imports at module level every command
pays for: the heavy packages only some commands need are imported in those commands'
bodies. Each check runs a fresh interpreter, as a restart does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pipeline.reader_process import SIZE

# Needed only once a command runs: the Faust app and its runtime (`run`), Temporal's
# client (`run`, `worker`, `replay`, `check`, and a secured handshake), the reader.
NOT_AT_CLI_IMPORT = (
    "faust",
    "mode",
    "temporalio",
    "prometheus_client",
    "pipeline.app",
    "pipeline.runner",
    "pipeline.lifecycle",
    "pipeline.handshake",
    "replication.reader",
)
# What `pipeline run` never uses: the Temporal worker and the other commands' modules.
NOT_ON_THE_RUN_PATH = (
    "temporalio.worker",
    "temporalio.testing",
    "pipeline.bootstrap.worker",
    "pipeline.bootstrap.activities",
    "pipeline.replay",
    "pipeline.status",
    "pipeline.check",
)


def modules_after(statement: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``statement``."""
    probe = f"{statement}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return [n for n in names if any(m == n or m.startswith(f"{n}.") for m in modules)]


def test_importing_the_cli_loads_neither_faust_nor_temporal_nor_the_reader() -> None:
    modules = modules_after("import pipeline.cli")
    assert loaded(modules, NOT_AT_CLI_IMPORT) == []


def test_the_run_path_loads_no_temporal_worker_and_no_other_command() -> None:
    modules = modules_after("import pipeline.cli, pipeline.runner")
    assert "faust" in modules  # the probe does import the run path
    assert loaded(modules, NOT_ON_THE_RUN_PATH) == []


def test_the_run_path_imports_temporalio_only_once_it_runs() -> None:
    """The Faust app and its handlers load without temporalio (about 0.5 s of CPU): the
    start client imports it in the background once the app runs (``warm_up``)."""
    modules = modules_after("import pipeline.cli, pipeline.runner, pipeline.app")
    assert "pipeline.agents.effects" in modules
    assert loaded(modules, ("temporalio",)) == []


def test_a_plaintext_handshake_check_imports_no_temporal_client() -> None:
    """`pipeline reader` / `status` with PLAINTEXT Kafka probe nothing, import nothing."""
    modules = modules_after(
        "import asyncio\n"
        "from pipeline.handshake import refusal\n"
        "from replication.kafka_client import PLAINTEXT\n"
        "assert asyncio.run(refusal(('127.0.0.1:9', PLAINTEXT))) is None"
    )
    assert loaded(modules, ("temporalio",)) == []


def gc_enabled_after_importing_the_cli_as(*argv: str) -> bool:
    probe = f"import sys\nsys.argv = {list(argv)!r}\nimport gc, pipeline.cli\nprint(gc.isenabled())"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    return result.stdout.strip().splitlines()[-1] == "True"


def test_pipeline_run_starts_with_the_garbage_collector_paused() -> None:
    assert not gc_enabled_after_importing_the_cli_as("/venv/bin/pipeline", "run")
    assert not gc_enabled_after_importing_the_cli_as("/venv/bin/pipeline", "-v", "run")


def test_other_commands_and_importers_keep_the_garbage_collector() -> None:
    assert gc_enabled_after_importing_the_cli_as("/venv/bin/pipeline", "status")
    assert gc_enabled_after_importing_the_cli_as("/venv/bin/pytest", "run")


# `pipeline run`'s reader process serves no page and runs no agent: these stay out of it.
NOT_IN_THE_READER_PROCESS = ("aiohttp", "faust", "mode", "temporalio")


def test_the_reader_process_loads_no_web_server_agent_or_temporal(tmp_path: Path) -> None:
    """The real child (``python -m pipeline.reader_process``), run until its settings fail:
    every module it imported on the way, from ``-X importtime``. aiohttp's web alone was
    ~12 MiB of the child's resident memory, counted in ``pipeline run``'s peak RSS."""
    block = os.memfd_create("reader-stats-probe")
    os.ftruncate(block, SIZE)
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-X",
                "importtime",
                "-m",
                "pipeline.reader_process",
                str(block),
                str(os.getpid()),
            ],
            check=False,
            pass_fds=(block,),
            env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.pathsep.join(sys.path)},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        os.close(block)
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    # It got as far as its settings, said what is wrong, and exits as a configuration error.
    assert "replication reader cannot start" in result.stderr
    assert "DATABASE_URL" in result.stderr
    assert result.returncode == 2
    assert {"replication.reader", "pipeline.config", "psycopg", "aiokafka"} <= imported
    assert loaded(imported, NOT_IN_THE_READER_PROCESS) == []
