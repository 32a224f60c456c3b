"""Free TCP ports for services the tests start themselves.

A port the kernel hands out for ``bind(("127.0.0.1", 0))`` comes from the ephemeral range,
and the kernel may hand the same port to an outgoing connection as its local port once our
probe closes it. A service started a few seconds later then fails to bind ("address already
in use"): a fresh-clone CI run lost the dev Temporal server's metrics port that way. So
these ports come from below the ephemeral range, which the kernel never assigns by itself.
"""

from __future__ import annotations

import random
from pathlib import Path

from pipeline.dev.process import port_bindable

_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10_000


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for ports it picks itself (Linux's default when unreadable)."""
    try:
        low, high = (int(part) for part in _RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def free_port(*offsets: int, host: str = "127.0.0.1") -> int:
    """A port below the ephemeral range that is free, with port + each offset free too.

    Temporal's dev server, for one, listens on its port + 10 and + 11 as well.
    """
    low, _ = ephemeral_range()
    span = max((0, *offsets))
    top = max(low - span, _LOWEST + 1)
    rng = random.SystemRandom()
    for _ in range(1000):
        port = rng.randrange(_LOWEST, top)
        if all(port_bindable(host, port + offset) for offset in (0, *offsets)):
            return port
    raise RuntimeError(f"no free port between {_LOWEST} and {low} after 1000 tries")
