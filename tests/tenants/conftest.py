"""`db` fixture: every registry test runs on SQLite and (when configured) PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text

from tenants.database import Database
from tenants.migrate import upgrade
from tests.tenants.db_urls import BACKENDS, empty_database

_CLEANUP = [
    "DELETE FROM audit_checkpoints",
    "DELETE FROM audit_records",
    "DELETE FROM prompt_variants",
    "DELETE FROM api_keys",
    "DELETE FROM tenants",
    "DELETE FROM public_prefixes",
    "UPDATE audit_chain_head SET seq = 0, hash = '" + "0" * 64 + "'",
]


@pytest.fixture(scope="module", params=BACKENDS)
def db_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """One migrated database per test module and backend."""
    with empty_database(request.param, tmp_path_factory.mktemp("db")) as url:
        upgrade(url)
        yield url


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """The module's database, emptied after each test."""
    database = Database.from_url(db_url)
    try:
        yield database
    finally:
        with database.engine.begin() as conn:
            for statement in _CLEANUP:
                conn.execute(text(statement))
        database.dispose()
