"""`prefixgate usage`: a tenant's usage rollups per day, key or variant, as JSON or CSV.

The same rows as `GET /admin/tenants/{id}/usage`, read straight from the registry database,
plus the `rejections` counter (requests refused after authentication).
"""

from __future__ import annotations

import csv
import dataclasses
import io
from datetime import date, datetime, timedelta

import click

from gateway.cli.registry_options import db_option, run_registry
from tenants.database import Database
from tenants.errors import RegistryError
from tenants.models.base import utcnow
from tenants.usage import GROUP_BYS, UsageRow, UsageStore

DEFAULT_DAYS = 30
FIELDS = tuple(f.name for f in dataclasses.fields(UsageRow))


@dataclasses.dataclass(frozen=True, slots=True)
class UsageReport:
    """The JSON shape of the admin endpoint: {"data": [rows]}."""

    data: list[UsageRow]


def _day(_ctx: click.Context, _param: click.Parameter, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value).date()
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from exc


@click.command("usage")
@click.option("--tenant", "tenant_id", required=True, help="Tenant id (ten_...).")
@click.option("--from", "start", callback=_day, help="First UTC day (default: 30 days ago).")
@click.option("--to", "end", callback=_day, help="Last UTC day, included (default: today).")
@click.option("--group-by", type=click.Choice(GROUP_BYS), default="day", show_default=True)
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="json",
              show_default=True)
@db_option
def cli(tenant_id: str, start: date | None, end: date | None, group_by: str, fmt: str,
        db_url: str) -> None:
    """A tenant's requests, prompt/cached/cache-write/completion tokens and rejections."""
    last = end or utcnow().date()
    first = start or last - timedelta(days=DEFAULT_DAYS - 1)

    def rows(db: Database) -> list[UsageRow]:
        return UsageStore(db).query(tenant_id, first, last, group_by)  # type: ignore[arg-type]

    if fmt == "json":
        run_registry(db_url, lambda db: UsageReport(rows(db)))
        return
    db = Database.from_url(db_url)
    try:
        click.echo(to_csv(rows(db)), nl=False)
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        db.dispose()


def to_csv(rows: list[UsageRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(FIELDS)
    for row in rows:
        writer.writerow([getattr(row, name) for name in FIELDS])
    return out.getvalue()
