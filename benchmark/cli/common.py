"""What every ``gembench`` command module shares: the common options and the error guard.

One place for the option types that several command groups take (``--quiet``,
``--trust-code``, ``--engine``, ``--address``, ``--metrics``), so they read the same in
every ``--help``. Imports only typer (``gembench --help`` stays fast).
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
Engine = Annotated[str, typer.Option(
    help="local (this process) or ray (a Ray cluster; see docs/ray.md).")]
Address = Annotated[str | None, typer.Option(
    help="ray: cluster address (auto or host:port); default: start a local Ray.")]
Metrics = Annotated[str | None, typer.Option(
    help="Comma-separated metrics <name>@<k> (e.g. recall@100,ndcg@100; names: recall, "
         "ndcg, hit, mrr, precision, map; k up to the track's max K, 100) instead of each "
         "track's defaults; the engine's top-K is the largest k.")]


def csv_list(value: str | None) -> list[str] | None:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``; None (or empty) -> None."""
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


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
