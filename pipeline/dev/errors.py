"""Errors of the local-services tooling."""

from __future__ import annotations


class ServiceError(RuntimeError):
    """A local service could not be installed, started, checked or stopped."""
