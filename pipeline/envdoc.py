"""The environment variables a command reads, for its ``--help`` (no list to keep in sync).

The names are found in the source of the modules that read them (every ``PIPELINE_*``
literal), so a setting added to ``pipeline/config.py`` appears in the help of every
command that loads the settings without anyone editing a list.
"""

from __future__ import annotations

import importlib.util
import re
from functools import cache
from pathlib import Path

_NAME = re.compile(r"\bPIPELINE_[A-Z0-9_]*[A-Z0-9]\b")

SETTINGS = ("pipeline.config", "pipeline.contract", "pipeline.eventloop")
RUN = (*SETTINGS, "pipeline.app")
WORKER = ("pipeline.bootstrap.settings", "pipeline.eventloop")
DEV = ("pipeline.dev.layout", "pipeline.dev.postgres", "pipeline.dev.kafka")


@cache
def _read(module: str) -> frozenset[str]:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return frozenset()
    return frozenset(_NAME.findall(Path(spec.origin).read_text(encoding="utf-8")))


def variables(*modules: str, extra: tuple[str, ...] = ()) -> list[str]:
    """Every PIPELINE_* name in the modules' source, plus extra, sorted."""
    names: set[str] = set(extra)
    for module in modules:
        names |= _read(module)
    return sorted(names)


def epilog(*modules: str, extra: tuple[str, ...] = ()) -> str:
    """The help text's last paragraph: which variables the command reads."""
    return "Environment: " + ", ".join(variables(*modules, extra=extra)) + "."
