"""`pipeline run`'s garbage-collector policy: frozen start-up heap, rarer full collections.

Run in a child interpreter: the collector's state is process-wide and pytest's own must
stay as it is.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _child(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout.strip()


def test_a_paused_collector_is_frozen_given_the_thresholds_and_enabled() -> None:
    out = _child(
        """
        import gc
        from pipeline import gcpolicy
        gc.disable()
        first = gcpolicy.resume()
        print(first, gc.isenabled(), gc.get_threshold(), gc.get_freeze_count() > 1000)
        print(gcpolicy.resume(), gc.get_threshold(), gc.isenabled())
        """
    )
    assert out.splitlines() == ["True True (700, 10, 100) True", "False (700, 10, 100) True"]


def test_a_running_collector_gets_the_thresholds_and_nothing_is_frozen() -> None:
    out = _child(
        """
        import gc
        from pipeline import gcpolicy
        print(gcpolicy.resume(), gc.isenabled(), gc.get_threshold(), gc.get_freeze_count())
        """
    )
    assert out == "False True (700, 10, 100) 0"


def test_cyclic_garbage_is_still_collected() -> None:
    # 200,000 reference cycles of a kilobyte each made after resume(): with collection
    # off they would all stay (~200 MB); under the policy few are left when it ends.
    out = _child(
        """
        import gc, weakref
        from pipeline import gcpolicy
        gc.disable()
        gcpolicy.resume()
        class Node:
            __slots__ = ("other", "payload", "__weakref__")
        alive = weakref.WeakSet()
        for _ in range(200_000):
            a, b = Node(), Node()
            a.other, b.other = b, a
            a.payload = bytes(1024)
            alive.add(a)
        print(len(alive))
        """
    )
    assert int(out) < 50_000, out
