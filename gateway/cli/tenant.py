"""`prefixgate tenant ...`: create, list, get, suspend and delete tenants."""

from __future__ import annotations

import click

from gateway.cli.registry_options import db_option, run_registry
from tenants import TenantService
from tenants.schemas import Quotas


@click.group("tenant")
def tenant_group() -> None:
    """Manage tenants (JSON output)."""


@tenant_group.command()
@click.argument("name")
@click.option("--cache-policy", type=click.Choice(["tenant", "user", "off"]), default="tenant",
              show_default=True)
@click.option("--max-kv-share", type=float, help="Largest share of the KV pool, in (0, 1].")
@click.option("--requests-per-min", type=int)
@click.option("--tokens-per-min", type=int)
@db_option
def create(name: str, cache_policy: str, max_kv_share: float | None,
           requests_per_min: int | None, tokens_per_min: int | None, db_url: str) -> None:
    """Create a tenant."""
    run_registry(db_url, lambda db: TenantService(db).create(
        name, cache_policy, Quotas(max_kv_share, requests_per_min, tokens_per_min)))


@tenant_group.command("list")
@db_option
def list_(db_url: str) -> None:
    """List all tenants."""
    run_registry(db_url, lambda db: TenantService(db).list())


@tenant_group.command()
@click.argument("tenant_id")
@db_option
def get(tenant_id: str, db_url: str) -> None:
    """Show one tenant."""
    run_registry(db_url, lambda db: TenantService(db).get(tenant_id))


@tenant_group.command()
@click.argument("tenant_id")
@db_option
def suspend(tenant_id: str, db_url: str) -> None:
    """Suspend a tenant: its keys are refused (403) until it is reactivated."""
    run_registry(db_url, lambda db: TenantService(db).suspend(tenant_id))


@tenant_group.command()
@click.argument("tenant_id")
@db_option
def delete(tenant_id: str, db_url: str) -> None:
    """Delete a tenant with its keys and prompt variants."""
    run_registry(db_url, lambda db: TenantService(db).delete(tenant_id))


cli = tenant_group
