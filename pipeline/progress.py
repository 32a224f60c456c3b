"""A one-line progress bar on stderr, drawn only when stderr is a terminal.

Redirected to a file or a pipe (a CI log, ``kubectl logs``), a bar redrawn with ``\\r``
is noise: there the bar prints nothing while running and one summary line at the end.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Records done / total and the rate; ``close()`` ends the line."""

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label, self.done, self.of = label, 0, 0
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.started = self.shown = time.monotonic()

    def total(self, n: int) -> None:
        self.of = n

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.tty and now - self.shown >= 0.2:
            self.shown = now
            self._draw(now)

    def _line(self, now: float) -> str:
        pct = 100.0 * self.done / self.of if self.of else 100.0
        rate = self.done / max(now - self.started, 1e-6)
        width = 30
        filled = int(width * pct / 100)
        return (
            f"{self.label} [{'#' * filled}{'.' * (width - filled)}] "
            f"{self.done}/{self.of} ({pct:5.1f}%) {rate:,.0f}/s"
        )

    def _draw(self, now: float) -> None:
        self.stream.write("\r" + self._line(now))
        self.stream.flush()

    def close(self) -> None:
        if not self.of:
            return
        if self.tty:
            self._draw(time.monotonic())
            self.stream.write("\n")
        else:
            self.stream.write(self._line(time.monotonic()) + "\n")
        self.stream.flush()
