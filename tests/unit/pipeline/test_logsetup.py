"""Faust's worker logs the pipeline's plain lines: the config `pipeline run` gives it,
applied the way mode's Worker applies it (``mode.utils.logging.setup_logging``)."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator

import pytest
from mode.utils.logging import setup_logging

from pipeline.logsetup import LOG_FORMAT, root_level_name, worker_logging_config


@pytest.fixture
def root_restored() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    aiokafka = logging.getLogger("aiokafka").level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("aiokafka").setLevel(aiokafka)


def test_the_worker_writes_plain_lines_naming_the_logger(
    root_restored: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    stderr = io.StringIO()
    monkeypatch.setattr("sys.stderr", stderr)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)  # as the CLI sets it
    setup_logging(loglevel="info", logging_config=worker_logging_config("info"))
    logging.getLogger("pipeline.agents.starting").info("started workflow_id=%s", "org-1")
    logging.getLogger("pipeline.agents.starting").debug("not shown")
    logging.getLogger("aiokafka.consumer").info("not shown either")
    lines = stderr.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO pipeline\.agents\.starting "
        r"started workflow_id=org-1",
        lines[0],
    ), lines[0]
    assert "\x1b" not in stderr.getvalue()  # no terminal escape codes


def test_debug_is_passed_through() -> None:
    config = worker_logging_config("debug")
    assert config["root"] == {"level": "DEBUG", "handlers": ["default"]}
    assert config["formatters"] == {"plain": {"format": LOG_FORMAT}}


def test_the_worker_keeps_the_level_the_cli_set(root_restored: None) -> None:
    logging.getLogger().setLevel(logging.DEBUG)  # pipeline -v run
    assert root_level_name() == "debug"
    logging.getLogger().setLevel(logging.INFO)
    assert root_level_name() == "info"
