"""Errors of the pipeline package. One base class; the CLI maps them to exit codes."""

from __future__ import annotations


class PipelineError(Exception):
    """Base of every error the pipeline raises on purpose."""


class ConfigError(PipelineError):
    """Configuration is missing or malformed; raised before any I/O."""


class MigrationError(PipelineError):
    """A migration cannot be applied (bad name, or edited after it was applied)."""
