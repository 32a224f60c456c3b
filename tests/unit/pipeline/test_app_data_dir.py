"""Issue 15 item 5: `pipeline run` in a fresh clone (no .cache/ folder yet) starts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pipeline.app import create_app
from pipeline.config import load_settings

ENV = {
    "PIPELINE_DATABASE_URL": "postgresql://app@db.internal:5432/app",
    "PIPELINE_KAFKA_BOOTSTRAP_SERVERS": "kafka:9092",
    "PIPELINE_TEMPORAL_ADDRESS": "temporal:7233",
}


def test_default_data_dir_is_created_with_its_parents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a fresh clone: no .cache/ folder
    loop = asyncio.new_event_loop()
    try:
        app = create_app(load_settings(ENV), env={"PIPELINE_INSTANCE_ID": "pod-0"}, loop=loop)
        app._create_directories()  # what Faust does when the worker starts
    finally:
        loop.close()
    assert (tmp_path / ".cache" / "faust" / "pod-0").is_dir()
