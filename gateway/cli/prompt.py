"""`prefixgate prompt ...`: register, list and retire a tenant's prompt variants."""

from __future__ import annotations

import click

from gateway.cli.registry_options import db_option, run_registry
from tenants import PromptService


def _public_prefix(_ctx: click.Context, _param: click.Parameter,
                   value: str | None) -> tuple[str, int] | None:
    if value is None:
        return None
    name, sep, version = value.rpartition(":")
    if not sep or not version.isdigit():
        raise click.BadParameter("expected NAME:VERSION")
    return name, int(version)


@click.group("prompt")
def prompt_group() -> None:
    """Manage prompt variants (JSON output)."""


@prompt_group.command()
@click.argument("tenant_id")
@click.argument("name")
@click.option("--file", "source", type=click.File("r", encoding="utf-8"), required=True,
              help="File with the prompt text ('-' for stdin).")
@click.option("--public-prefix", callback=_public_prefix, metavar="NAME:VERSION",
              help="Public prefix the variant starts with.")
@db_option
def register(tenant_id: str, name: str, source: click.utils.LazyFile,
             public_prefix: tuple[str, int] | None, db_url: str) -> None:
    """Register the next version of a prompt variant."""
    content = source.read()
    run_registry(db_url, lambda db: PromptService(db).register(
        tenant_id, name, content, public_prefix))


@prompt_group.command("list")
@click.argument("tenant_id")
@db_option
def list_(tenant_id: str, db_url: str) -> None:
    """List every version of a tenant's variants."""
    run_registry(db_url, lambda db: PromptService(db).list(tenant_id))


@prompt_group.command()
@click.argument("tenant_id")
@click.argument("name")
@click.argument("version", type=int)
@db_option
def retire(tenant_id: str, name: str, version: int, db_url: str) -> None:
    """Retire one version of a variant."""
    run_registry(db_url, lambda db: PromptService(db).retire(tenant_id, name, version))


cli = prompt_group
