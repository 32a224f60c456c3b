"""The event loop every long-running process runs on: uvloop's, or asyncio's own.

``PIPELINE_EVENT_LOOP`` picks it: ``uvloop`` (the default) or ``asyncio``. uvloop is
libuv under asyncio's interface; the pipeline's libraries (psycopg, aiokafka, Faust,
temporalio) use only that interface. What it saves is measured in docs/benchmarks.md
(issue 17); ``asyncio`` is the way back should a library ever disagree with it.

The settings of ``pipeline run``/``reader`` (:func:`pipeline.config.load_settings`) and of
the worker (:func:`pipeline.bootstrap.settings.from_env`) list :func:`problems` with
every other bad variable, so a bad value exits 2 before anything starts.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Final, TypeVar

from pipeline.errors import ConfigError

T = TypeVar("T")

log = logging.getLogger(__name__)

ENV: Final = "PIPELINE_EVENT_LOOP"
CHOICES: Final = ("uvloop", "asyncio")
DEFAULT: Final = "uvloop"


class EventLoopChoiceError(ConfigError):
    """PIPELINE_EVENT_LOOP names no loop this module knows (exit 2, like any bad setting)."""


def _unknown(value: str) -> str:
    """What the settings' error list says of a value that names no loop."""
    return f"must be one of {', '.join(CHOICES)} (default {DEFAULT}), got {value!r}"


def problems(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """What is wrong with ``PIPELINE_EVENT_LOOP``, as (variable, message) pairs: each
    settings list words its lines its own way, this one among them."""
    value = environ.get(ENV, "").strip().lower()
    return [(ENV, _unknown(value))] if value and value not in CHOICES else []


def chosen(environ: Mapping[str, str] | None = None) -> str:
    """The loop ``PIPELINE_EVENT_LOOP`` names (default uvloop); a clear error otherwise."""
    environ = os.environ if environ is None else environ
    found = problems(environ)
    if found:
        name, message = found[0]
        raise EventLoopChoiceError(f"{name} {message}")
    return environ.get(ENV, "").strip().lower() or DEFAULT


def loop_factory(name: str | None = None) -> Callable[[], asyncio.AbstractEventLoop]:
    """A function making a new loop of the chosen kind."""
    name = name or chosen()
    log.debug("event loop: %s", name)
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def new_loop() -> asyncio.AbstractEventLoop:
    """A new loop of the chosen kind (for code that runs the loop itself: Faust's worker)."""
    return loop_factory()()


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on a loop of the chosen kind."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
