"""``gembench list``: what is registered (data sets, sources, tracks, methods).

Kept apart so the registry listing has one obvious home; :mod:`benchmark.api` is imported
only when it runs.
The command functions are plain: :mod:`benchmark.cli` registers them on the app, in the
order of ``gembench --help``.
"""

from __future__ import annotations

import typer


def list_registered() -> None:
    """List registered data sets, data sources, tracks and methods."""
    from benchmark import api

    for group, entries in api.registered().items():
        typer.echo(f"{group}:")
        for name, summary in entries.items():
            typer.echo(f"  {name:18s} {summary}")
