"""`prefixgate db`: schema management through the Alembic migrations."""

from __future__ import annotations

import click

from gateway.cli.registry_options import db_option
from tenants.migrate import upgrade as upgrade_schema


@click.group()
def cli() -> None:
    """Manage the registry database schema."""


@cli.command()
@db_option
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def upgrade(db_url: str, revision: str) -> None:
    """Create or migrate the registry schema (the only way the schema changes)."""
    upgrade_schema(db_url, revision)
    click.echo(f"registry schema at {revision}")
