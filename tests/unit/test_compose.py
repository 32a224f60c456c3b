"""docker-compose.yml is checked by a real Compose implementation (Debian's docker-compose)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_compose_file_passes_docker_compose_config() -> None:
    compose = shutil.which("docker-compose")
    assert compose is not None, "docker-compose not installed: run scripts/setup.sh"
    result = subprocess.run(
        [compose, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_compose_runs_the_whole_stack_with_health_checks() -> None:
    spec = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = spec["services"]
    assert {"postgres", "kafka", "temporal", "pipeline", "worker"} <= services.keys()
    assert "wal_level=logical" in services["postgres"]["command"]
    for name in ("postgres", "kafka", "temporal", "pipeline"):
        assert "healthcheck" in services[name], name
