"""Where the local services live and which ports they use (all overridable by env)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_VERSION = "4.1.1"


@dataclass(frozen=True, slots=True)
class DevLayout:
    """Folders and ports of the local services.

    ``state_dir`` holds data, logs and pid files of this checkout (git-ignored);
    ``cache_dir`` holds downloaded artifacts shared by every checkout on the machine, so
    a fresh clone does not fetch the Kafka jars again.
    """

    state_dir: Path
    cache_dir: Path
    host: str
    pg_port: int
    kafka_port: int
    kafka_controller_port: int
    temporal_port: int
    temporal_ui_port: int

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def database_url(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.pg_port}/pipeline"

    @property
    def kafka_bootstrap(self) -> str:
        return f"{self.host}:{self.kafka_port}"

    @property
    def temporal_address(self) -> str:
        return f"{self.host}:{self.temporal_port}"

    def env(self) -> dict[str, str]:
        """The pipeline's configuration variables pointing at these services."""
        return {
            "PIPELINE_DATABASE_URL": self.database_url,
            "PIPELINE_KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            "PIPELINE_TEMPORAL_ADDRESS": self.temporal_address,
            "PIPELINE_TEMPORAL_NAMESPACE": "default",
            # Local services only: production's key is a random Secret (docs/security.md).
            "PIPELINE_INVITATION_KEY": "dev-only-invitation-key-never-use-in-production",
        }


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a port number, got {raw!r}") from exc


def load_layout(env: Mapping[str, str] | None = None) -> DevLayout:
    """Build the layout from PIPELINE_DEV_* variables, defaulting to this checkout."""
    env = os.environ if env is None else env
    cache_home = Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return DevLayout(
        state_dir=Path(env.get("PIPELINE_DEV_DIR") or REPO_ROOT / ".cache" / "dev").resolve(),
        cache_dir=Path(env.get("PIPELINE_CACHE_DIR") or cache_home / "pipeline").resolve(),
        host="127.0.0.1",
        pg_port=_int(env, "PIPELINE_DEV_PG_PORT", 55432),
        kafka_port=_int(env, "PIPELINE_DEV_KAFKA_PORT", 59092),
        kafka_controller_port=_int(env, "PIPELINE_DEV_KAFKA_CONTROLLER_PORT", 59093),
        temporal_port=_int(env, "PIPELINE_DEV_TEMPORAL_PORT", 57233),
        temporal_ui_port=_int(env, "PIPELINE_DEV_TEMPORAL_UI_PORT", 58233),
    )
