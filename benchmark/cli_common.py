"""What every ``gembench`` command module shares: the ``--quiet`` option and the error guard.

Imports only typer (``gembench --help`` stays fast).
"""

from __future__ import annotations

from typing import Annotated

import typer

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
TrustCode = Annotated[bool, typer.Option(
    "--trust-code",
    help="Import the method class a file (record, judge) names even when it is not a "
         "registered method: that runs its code, so only for files you trust "
         "(docs/security.md).")]


def guard(fn):
    """Run a command body; print GembenchError / KeyError / ValueError as one line and exit
    with its code (2 for user errors)."""
    from benchmark.errors import GembenchError

    try:
        return fn()
    except GembenchError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(e.exit_code) from None
    except (KeyError, ValueError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        typer.echo(f"error: {msg}", err=True)
        raise typer.Exit(2) from None
