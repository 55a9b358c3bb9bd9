"""Shared pieces of the registry commands: the `--db` option, JSON output, error reporting."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import click
from sqlalchemy.exc import OperationalError, ProgrammingError

from tenants.database import Database
from tenants.errors import Conflict, Invalid, NotFound, RegistryError

DEFAULT_DB_URL = "sqlite:///data/prefixgate.db"
F = TypeVar("F", bound=Callable[..., Any])

db_option: Callable[[F], F] = click.option(
    "--db",
    "db_url",
    envvar=["PREFIXGATE_DB_URL", "PREFIXGATE_DB"],
    default=DEFAULT_DB_URL,
    show_default=True,
    help="Registry database URL (sqlite:///path or postgresql+psycopg://...).",
)

_ERROR_TYPES: list[tuple[type[RegistryError], str]] = [
    (NotFound, "not_found"),
    (Conflict, "conflict"),
    (Invalid, "invalid"),
]


def run_registry(db_url: str, action: Callable[[Database], object]) -> None:
    """Run `action` on the registry and print its result as JSON; errors go to stderr, exit 1."""
    db = Database.from_url(db_url)
    try:
        emit(action(db))
    except RegistryError as exc:
        kind = next((name for cls, name in _ERROR_TYPES if isinstance(exc, cls)), "error")
        _fail(kind, str(exc))
    except (OperationalError, ProgrammingError) as exc:
        _fail("database_error", f"{type(exc.orig).__name__}: the registry database is not "
              f"reachable or not migrated (run `prefixgate db upgrade --db URL`)")
    finally:
        db.dispose()


def emit(result: object) -> None:
    click.echo(json.dumps(_plain(result), indent=2, sort_keys=False))


def _plain(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _fail(kind: str, message: str) -> None:
    click.echo(json.dumps({"error": {"type": kind, "message": message}}), err=True)
    sys.exit(1)
