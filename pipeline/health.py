"""What ``/healthz`` and ``/readyz`` answer.

Liveness is the event loop answering at all. Readiness adds the checks the process
registers: the Faust app not rebalancing, and, on the replica that holds the slot, the
reader not further behind the server's WAL than ``PIPELINE_READY_MAX_LAG_BYTES``. A
replica waiting for the slot is ready: its agents serve their partitions.
"""

from __future__ import annotations

from collections.abc import Callable

# A check returns None when fine, or why the process is not ready.
ReadinessCheck = Callable[[], str | None]

_checks: list[ReadinessCheck] = []


def register(check: ReadinessCheck) -> None:
    """Add a readiness check (kept for the life of the process)."""
    _checks.append(check)


def not_ready_reasons() -> list[str]:
    """Every failing readiness check's reason; empty when ready."""
    return [reason for check in _checks if (reason := check()) is not None]


def reader_lag_check(
    active: Callable[[], bool], lag_bytes: Callable[[], int], max_lag_bytes: int
) -> ReadinessCheck:
    """Not ready while this process reads the slot and lags more than max_lag_bytes."""

    def check() -> str | None:
        lag = lag_bytes()
        if active() and lag > max_lag_bytes:
            return f"replication lag {lag} bytes > {max_lag_bytes}"
        return None

    return check


def reader_dead_letters_check(unsent: Callable[[], int]) -> ReadinessCheck:
    """Not ready while rows the reader set aside have no copy in the dead-letter topic
    (kept in pipeline_dead_letters with published = false; the slot moved on regardless)."""

    def check() -> str | None:
        count = unsent()
        if count:
            return (
                f"{count} row(s) the reader could not convert have no copy in the dead-letter "
                "topic (pipeline dead-letters list; redrive sends them)"
            )
        return None

    return check
