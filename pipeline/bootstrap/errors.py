"""Errors of the organization bootstrap.

Providers raise :class:`ProviderError` with a ``retryable`` verdict decided where the
failure is understood (a status code, an SMTP reply); the activities turn that verdict
into Temporal's retry decision in one place (:func:`pipeline.bootstrap.retry.classified`).
"""

from __future__ import annotations

from pipeline.errors import PipelineError


class BootstrapError(PipelineError):
    """Base of every error the bootstrap raises on purpose."""


class InvalidBootstrapInput(BootstrapError, ValueError):
    """The bootstrap request itself is wrong; no retry can fix it.

    ``field`` names the offending input (``subdomain``, ``admins[1].email``, ...) so the
    reason recorded in ``organization.bootstrap.failed`` tells the requester what to fix.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class ProviderError(BootstrapError):
    """A DNS or email provider failed; ``retryable`` says whether trying again may help."""

    kind = "ProviderError"

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class DnsProviderError(ProviderError):
    """The DNS provider refused or failed an operation."""

    kind = "DnsProviderError"


class EmailProviderError(ProviderError):
    """The email provider refused or failed to send a message."""

    kind = "EmailProviderError"
