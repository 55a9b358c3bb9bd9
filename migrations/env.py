"""Alembic environment: runs migrations against `sqlalchemy.url` with the registry's metadata."""

from __future__ import annotations

from typing import Any

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import create_engine, pool

from tenants.models import Base
from tenants.models.base import UTCDateTime

config = context.config
target_metadata = Base.metadata
# Arbitrary 63-bit key of prefixgate's schema-migration advisory lock on PostgreSQL.
_MIGRATION_LOCK = 0x70726566_69786700


def render_item(kind: str, obj: Any, autogen: AutogenContext) -> str | bool:
    """Render the registry's UTC timestamp type as a plain column type (no model import)."""
    if kind == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run_offline() -> None:
    """Emit SQL for `alembic upgrade --sql` without a connection."""
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = create_engine(config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
            render_item=render_item,
        )
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                # NOTE: replicas, the migration Job and `serve` may all upgrade at once on a
                # first deploy; one transaction-scoped advisory lock runs them one after another
                # (the later ones then find the schema at head and do nothing).
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
