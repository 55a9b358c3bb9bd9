"""`prefixgate serve`: runs the gateway on its embedded defaults."""

from __future__ import annotations

import sys

import click


@click.command()
def cli() -> None:
    """Run the gateway (HTTP API) on the embedded defaults."""
    click.echo(
        "prefixgate serve: the gateway (issue 7) is not built yet. Available today: the radix "
        "tree (radix/), see README.md for what works.",
        err=True,
    )
    sys.exit(2)
