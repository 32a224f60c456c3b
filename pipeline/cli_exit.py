"""How a ``pipeline`` command ends: its exit codes, and the one-line error it prints.

Exit codes: 0 success; 1 a runtime failure (a service unreachable, a check failed);
2 bad usage or invalid configuration (nothing was touched).
"""

from __future__ import annotations

import os
import sys
from typing import Final, NoReturn

import typer

EXIT_FAILURE: Final = 1
EXIT_CONFIG: Final = 2


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
