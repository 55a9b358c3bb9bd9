"""Fresh, migrated test databases: a SQLite file, or a private PostgreSQL schema."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

PG_URL_ENV = "PREFIXGATE_TEST_PG_URL"
BACKENDS = ["sqlite", "postgresql"]


def pg_url() -> str:
    url = os.environ.get(PG_URL_ENV)
    if not url:
        pytest.skip(f"{PG_URL_ENV} is not set")
    return url


@contextmanager
def empty_database(backend: str, tmp_dir: Path) -> Iterator[str]:
    """URL of an empty database; on PostgreSQL a schema of its own, dropped afterwards.

    Other test runs may share the PostgreSQL database, so each user gets a private schema
    (reached through `search_path`) rather than the public one.
    """
    if backend == "sqlite":
        yield f"sqlite:///{tmp_dir / 'registry.db'}"
        return
    base = make_url(pg_url())
    schema = "pgtest_" + secrets.token_hex(6)
    dsn = base.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        url = base.update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
