"""How a ``pipeline`` command ends: its exit codes, and the one-line error it prints.

Exit codes: 0 success; 1 a runtime failure (a service unreachable, a check failed);
2 bad usage or invalid configuration (nothing was touched). A command that ends on an
error exits with :func:`exit_code`: the row of :mod:`replication.retry`'s table the error
matches says whether the configuration must change (2) or not (1).
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

import typer

from pipeline.errors import ConfigError
from replication.retry import EXIT_CONFIG, EXIT_FAILURE, classify

__all__ = ["EXIT_CONFIG", "EXIT_FAILURE", "exit_code", "exit_now", "fail"]


def exit_code(error: BaseException) -> int:
    """The exit code of a command that ends on ``error``: 2 for a configuration error
    (ConfigError, or a row of the retry table the operator fixes), else 1."""
    if isinstance(error, ConfigError):
        return EXIT_CONFIG
    return classify(error).exit_code


def fail(message: str, code: int = EXIT_FAILURE) -> typer.Exit:
    """Print message in red on stderr; the exit to raise with code."""
    typer.secho(message, err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def exit_now(code: int) -> NoReturn:
    """Exit without interpreter finalization once a Temporal client ran: its core's
    threads can abort a finalizing interpreter ("PyGILState_Release", temporalio
    sdk-python issue 300), which turned an exit 2 into 134 about one time in three."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
