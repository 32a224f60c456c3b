"""docker-compose.yml is checked by a real Compose implementation (Debian's docker-compose)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]


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


def _published(service: dict[str, object]) -> list[str]:
    return [str(p) for p in service.get("ports", [])]  # type: ignore[attr-defined]


def test_no_port_is_published_on_every_interface() -> None:
    # PostgreSQL has a default password: published on 0.0.0.0 anyone on the network
    # could log in. Everything is published on the loopback interface only.
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name, service in services.items():
        for port in _published(service):
            assert port.startswith("127.0.0.1:"), (name, port)
    assert _published(services["postgres"]) == ["127.0.0.1:5432:5432"]
    password = services["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert password.startswith("${POSTGRES_PASSWORD"), password


def test_the_pipelines_port_and_health_check_follow_pipeline_web_port() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    pipeline = services["pipeline"]
    assert pipeline["environment"]["PIPELINE_WEB_PORT"] == "${PIPELINE_WEB_PORT:-6066}"
    assert _published(pipeline) == [
        "127.0.0.1:${PIPELINE_WEB_PORT:-6066}:${PIPELINE_WEB_PORT:-6066}"
    ]
    assert "PIPELINE_WEB_PORT" in " ".join(pipeline["healthcheck"]["test"])
    assert services["worker"]["healthcheck"] == {"disable": True}
