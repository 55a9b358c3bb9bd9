"""Migrations build the schema the models describe, on empty SQLite and PostgreSQL databases."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from tenants.migrate import downgrade, upgrade
from tenants.models import Base
from tests.tenants.db_urls import BACKENDS, empty_database


def _diff(url: str) -> list[object]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_upgrade_empty_database_matches_models(backend: str, tmp_path: Path) -> None:
    with empty_database(backend, tmp_path) as url:
        assert _tables(url) == set()
        upgrade(url)
        assert _tables(url) == set(Base.metadata.tables) | {"alembic_version"}
        assert _diff(url) == []
        engine = create_engine(url)
        with engine.connect() as conn:
            head = conn.execute(text("SELECT seq, hash FROM audit_chain_head")).all()
        engine.dispose()
        assert head == [(0, "0" * 64)]
        downgrade(url, "base")
        assert _tables(url) == {"alembic_version"}
        upgrade(url)
        assert _diff(url) == []
