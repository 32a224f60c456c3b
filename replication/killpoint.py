"""Deterministic crash points for the crash tests (test-only, off unless the env says so).

``PIPELINE_KILL_AT=name[:n]`` makes the process SIGKILL itself the n-th time (default 1st)
it reaches the point called ``name``: the crash tests reach each dangerous moment
deterministically instead of sleeping and hoping. ``PIPELINE_KILL_SIGNAL=STOP`` freezes the
process there instead (SIGSTOP: a frozen reader, resumed later by the test's SIGCONT).
"""

from __future__ import annotations

import os
import signal

_spec = os.environ.get("PIPELINE_KILL_AT", "")
_name, _, _count = _spec.partition(":")
_state = {"remaining": int(_count) if _count.isdigit() else 1}
_signal = signal.SIGSTOP if os.environ.get("PIPELINE_KILL_SIGNAL") == "STOP" else signal.SIGKILL


def reached(name: str) -> None:
    """Die (or freeze) here, without any cleanup, if this is the configured kill point."""
    if not _name or name != _name:
        return
    _state["remaining"] -= 1
    if _state["remaining"] == 0:  # once: a frozen process resumed goes on
        os.kill(os.getpid(), _signal)
