"""Runs the Alembic migrations in `migrations/` programmatically (no alembic.ini, no cwd)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import command
from alembic.config import Config

from tenants.database import ensure_sqlite_dir


def alembic_config(url: str) -> Config:
    """Alembic config pointing at the installed `migrations` package and the given database."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.set_main_option(
        "file_template",
        "%%(year)d_%%(month).2d_%%(day).2d_%%(hour).2d%%(minute).2d-%%(rev)s_%%(slug)s",
    )
    return config


def migrations_dir() -> Path:
    """Directory of the `migrations` package, wherever it is installed (or checked out)."""
    spec = importlib.util.find_spec("migrations")
    assert spec is not None and spec.submodule_search_locations is not None
    for location in spec.submodule_search_locations:
        if (Path(location) / "env.py").is_file():
            return Path(location)
    raise RuntimeError("the migrations package has no env.py")


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to `revision` (creating the schema on an empty one)."""
    ensure_sqlite_dir(url)
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    """Step the database at `url` back to `revision` (`base` drops everything)."""
    command.downgrade(alembic_config(url), revision)
