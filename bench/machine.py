"""The machine and the versions a benchmark ran on."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import psycopg

from pipeline import eventloop
from pipeline.dev.layout import KAFKA_VERSION


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return 0.0


def _temporal_cli() -> str:
    exe = Path(sys.executable).parent / "temporal"
    try:
        out = subprocess.run(
            [str(exe), "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except OSError:
        return "unknown"
    return out.stdout.strip().removeprefix("temporal version ")


def describe(admin_dsn: str, temporal_server: str) -> dict[str, str]:
    """nproc, memory, CPU, load average and the versions of everything measured."""
    with psycopg.connect(admin_dsn) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        commit_ts = conn.execute("SHOW track_commit_timestamp").fetchone()
    load1, load5, _ = os.getloadavg()
    return {
        "nproc": str(os.cpu_count()),
        "cpu": _cpu_model(),
        "memory_gib": f"{_memory_gib():.1f}",
        "load_average_at_start": f"{load1:.2f} (1 min), {load5:.2f} (5 min)",
        "kernel": platform.release(),
        "postgresql": str(row[0]) if row else "unknown",
        "track_commit_timestamp": str(commit_ts[0]) if commit_ts else "unknown",
        "kafka": KAFKA_VERSION,
        "temporal": f"CLI {_temporal_cli()}; server {temporal_server}",
        "python": platform.python_version(),
        "faust-streaming": version("faust-streaming"),
        "temporalio": version("temporalio"),
        "aiokafka": version("aiokafka"),
        "psycopg": version("psycopg"),
        # Every Python process of the bench, ours and the baselines (pipeline/eventloop.py).
        "event_loop": _event_loop(),
    }


def _event_loop() -> str:
    name = eventloop.chosen()
    return f"{name} {version('uvloop')}" if name == "uvloop" else name
