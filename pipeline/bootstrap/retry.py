"""The bootstrap activities' retry decision, taken in one place: which failure Temporal
retries (one that may pass later) and which it does not (a bad request, a rejected write).

The ``type`` of each :class:`~temporalio.exceptions.ApplicationError` is what the workflow's
retry policies and its recorded failure reasons name.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import psycopg
from temporalio.exceptions import ApplicationError

from pipeline.bootstrap.errors import InvalidBootstrapInput, ProviderError

INVALID_INPUT = "InvalidBootstrapInput"
STORE_UNAVAILABLE = "EventStoreUnavailable"
STORE_REJECTED = "EventStoreRejected"
INVITATION_KEY_CHANGED = "InvitationKeyChanged"


@contextmanager
def classified() -> Iterator[None]:
    """Turn a failure into Temporal's retry decision: retry only what may pass later."""
    try:
        yield
    except InvalidBootstrapInput as exc:
        raise ApplicationError(str(exc), type=INVALID_INPUT, non_retryable=True) from exc
    except ProviderError as exc:
        raise ApplicationError(str(exc), type=exc.kind, non_retryable=not exc.retryable) from exc
    except psycopg.OperationalError as exc:
        raise ApplicationError(f"event store: {exc}", type=STORE_UNAVAILABLE) from exc
    except psycopg.Error as exc:
        # A rejected statement (bad data, missing function) fails the same way every time.
        raise ApplicationError(
            f"event store rejected the write: {exc}", type=STORE_REJECTED, non_retryable=True
        ) from exc


def stored_text(data: Mapping[str, object], key: str) -> str:
    """A text field of an event read back from the store; its absence is not retried."""
    value = data.get(key)
    if not isinstance(value, str):
        raise ApplicationError(
            f"stored event lacks {key!r}", type=STORE_REJECTED, non_retryable=True
        )
    return value
