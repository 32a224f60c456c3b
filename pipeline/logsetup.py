"""One log line format for every process: the CLI's commands, the reader child and the
Faust worker of ``pipeline run``.

Faust's worker would otherwise replace the CLI's handler with mode's: colorlog's
formatter, which works out its escape codes for every record even when the stream is
no terminal. That cost ~48 µs a line against ~6 µs for a plain one, and at a hundred
starts a second the per-job lines were about 6 % of ``pipeline run``'s samples
(docs/benchmarks.md, issue 17). Plain lines also read better in a log collector, and
name the logger.
"""

from __future__ import annotations

import logging
from typing import Final

LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s %(message)s"


def worker_logging_config(level: str) -> dict[str, object]:
    """The ``logging.config.dictConfig`` Faust's worker is given (``logging_config``):
    LOG_FORMAT on stderr at level (a name: "info", "debug"); loggers configured
    before it (aiokafka's level, set by the CLI) are left as they are."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": LOG_FORMAT}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level.upper(), "handlers": ["default"]},
    }


def root_level_name() -> str:
    """The root logger's level as a name ("info", "debug"): what the CLI configured
    (``pipeline -v run`` is debug), for the worker to keep instead of resetting it."""
    return logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower()
