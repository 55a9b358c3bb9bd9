"""`prefixgate key ...`: issue, list, revoke and rotate API keys."""

from __future__ import annotations

import click

from gateway.cli.registry_options import db_option, run_registry
from tenants import KeyService


@click.group("key")
def key_group() -> None:
    """Manage API keys (JSON output; a secret is printed only when issued)."""


@key_group.command()
@click.argument("tenant_id")
@click.option("--name", default=None, help="Label for the key.")
@click.option("--scope", "scopes", multiple=True, default=("inference",), show_default=True)
@db_option
def issue(tenant_id: str, name: str | None, scopes: tuple[str, ...], db_url: str) -> None:
    """Issue a key; the printed `key` is the secret and is never shown again."""
    run_registry(db_url, lambda db: KeyService(db).issue(tenant_id, name, tuple(scopes)))


@key_group.command("list")
@click.argument("tenant_id")
@db_option
def list_(tenant_id: str, db_url: str) -> None:
    """List a tenant's keys (no secrets)."""
    run_registry(db_url, lambda db: KeyService(db).list(tenant_id))


@key_group.command()
@click.argument("tenant_id")
@click.argument("key_id")
@db_option
def revoke(tenant_id: str, key_id: str, db_url: str) -> None:
    """Revoke a key."""
    run_registry(db_url, lambda db: KeyService(db).revoke(tenant_id, key_id))


@key_group.command()
@click.argument("tenant_id")
@click.argument("key_id")
@db_option
def rotate(tenant_id: str, key_id: str, db_url: str) -> None:
    """Revoke a key and issue its replacement (same name and scopes)."""
    run_registry(db_url, lambda db: KeyService(db).rotate(tenant_id, key_id))


cli = key_group
