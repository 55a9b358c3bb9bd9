"""`prefixgate audit ...`: verify the signed audit chain (database or export file), export it.

Exit codes of `verify`: 0 the chain is intact, 1 it is broken (stderr names the first broken
record), 2 it could not be checked (no public key, unreachable database, unreadable file).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn, TextIO, TypeVar

import click
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.exc import OperationalError, ProgrammingError

from gateway.cli.registry_options import db_option
from tenants.audit_backlog import sign_backlog
from tenants.audit_export import export_jsonl, verify_export
from tenants.audit_schemas import VerifyReport
from tenants.audit_signing import DEFAULT_CHECKPOINT_EVERY, AuditSigner
from tenants.audit_verify import verify_chain
from tenants.database import Database
from tenants.errors import RegistryError
from tenants.server_key import (
    KEY_FILE_NAME,
    load_or_create_private_key,
    load_private_key,
    private_key_from_text,
    public_key_from_text,
    public_key_pem,
)

T = TypeVar("T")


def _default_key_file() -> Path:
    return Path(os.environ.get("PREFIXGATE_DATA_DIR", "data")) / KEY_FILE_NAME


def _since(_ctx: click.Context, _param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter("expected an ISO 8601 time, e.g. 2026-11-25T04:00:00Z") from exc
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


since_option = click.option("--since", callback=_since, default=None,
                            help="ISO time (UTC if no zone); starts at the last checkpoint "
                                 "signed at or before it.")
key_file_option = click.option(
    "--key-file", type=click.Path(path_type=Path), default=None,
    envvar="PREFIXGATE_AUDIT_SIGNING_KEY_FILE",
    help="The server's signing key file (default <PREFIXGATE_DATA_DIR or data>/"
         f"{KEY_FILE_NAME}); its public half is used.")


@click.group()
def cli() -> None:
    """Verify and export the signed, hash-chained audit trail."""


@cli.command()
@db_option
@since_option
@click.option("--file", "export_file", type=click.File("r"), default=None,
              help="Verify this export (JSON lines) offline instead of the database.")
@click.option("--public-key", default=None,
              help="Trusted Ed25519 public key: a file or the text (PEM or base64 raw).")
@key_file_option
@click.option("--checkpoint-every", type=click.IntRange(min=1),
              default=DEFAULT_CHECKPOINT_EVERY, show_default=True,
              envvar="PREFIXGATE_AUDIT_CHECKPOINT_EVERY",
              help="The signer's checkpoint interval (a checkpoint must exist at each multiple).")
def verify(db_url: str, since: datetime | None, export_file: TextIO | None,
           public_key: str | None, key_file: Path | None, checkpoint_every: int) -> None:
    """Check hashes, links and checkpoint signatures; exit 1 naming the first broken record."""
    trusted = _trusted_key(public_key, key_file)
    if export_file is not None:
        report = verify_export(export_file, trusted, checkpoint_every)
    else:
        report = _with_db(db_url, lambda db: verify_chain(
            db, since=since, public_key=trusted, checkpoint_every=checkpoint_every))
    click.echo(json.dumps(_report_json(report), indent=2))
    if not report.ok:
        click.echo(f"audit chain broken at record {report.first_broken}: {report.reason}",
                   err=True)
        sys.exit(1)


@cli.command()
@db_option
@since_option
@click.option("--tenant", "tenant_id", default=None,
              help="Only this tenant's records (for review; not verifiable as a chain).")
@click.option("--out", type=click.File("w"), default="-", show_default=True,
              help="Output file (JSON lines).")
def export(db_url: str, since: datetime | None, tenant_id: str | None, out: TextIO) -> None:
    """Write every record and checkpoint as JSON lines for offline review and verification."""
    summary = _with_db(db_url, lambda db: export_jsonl(db, out, since=since,
                                                        tenant_id=tenant_id))
    out.flush()
    click.echo(json.dumps({"records": summary.records, "checkpoints": summary.checkpoints,
                           "start_seq": summary.start_seq, "head_seq": summary.head_seq,
                           "complete": summary.complete}), err=True)


@cli.command("sign-backlog")
@db_option
@key_file_option
@click.option("--checkpoint-every", type=click.IntRange(min=1),
              default=DEFAULT_CHECKPOINT_EVERY, show_default=True,
              envvar="PREFIXGATE_AUDIT_CHECKPOINT_EVERY")
def sign_backlog_cmd(db_url: str, key_file: Path | None, checkpoint_every: int) -> None:
    """Sign, once, records appended before signing was enabled (trusts the chain as it is)."""
    path = key_file or _default_key_file()
    signer = _guarded(lambda: AuditSigner(load_or_create_private_key(path), checkpoint_every))
    signed = _with_db(db_url, lambda db: sign_backlog(db, signer))
    click.echo(json.dumps({"checkpoints_signed": signed, "key_file": str(path)}))


@cli.command("public-key")
@key_file_option
def public_key_cmd(key_file: Path | None) -> None:
    """Print the signing key's public half (PEM), to hand to offline verifiers."""
    click.echo(public_key_pem(_trusted_key(None, key_file)), nl=False)


def _trusted_key(public_key: str | None, key_file: Path | None) -> Ed25519PublicKey:
    """--public-key, else PREFIXGATE_AUDIT_SIGNING_KEY, else the key file; exit 2 if none."""
    if public_key is not None:
        path = Path(public_key)
        text = path.read_text() if path.is_file() else public_key
        return _guarded(lambda: public_key_from_text(text))
    if os.environ.get("PREFIXGATE_AUDIT_SIGNING_KEY"):
        text = os.environ["PREFIXGATE_AUDIT_SIGNING_KEY"]
        return _guarded(lambda: private_key_from_text(text).public_key())
    path = key_file or _default_key_file()
    if not path.is_file():
        _fail(f"no public key: pass --public-key, or --key-file (no key at {path})")
    return _guarded(lambda: load_private_key(path).public_key())


def _guarded(action: Callable[[], T]) -> T:
    """`action()`, with a registry error (bad key text, key file mode) reported as exit 2."""
    try:
        return action()
    except RegistryError as exc:
        _fail(str(exc))


def _with_db(db_url: str, action: Callable[[Database], T]) -> T:
    db = Database.from_url(db_url)
    try:
        return action(db)
    except RegistryError as exc:
        _fail(str(exc))
    except (OperationalError, ProgrammingError) as exc:
        _fail(f"{type(exc.orig).__name__}: the registry database is not reachable or not "
              f"migrated (run `prefixgate db upgrade --db URL`)")
    finally:
        db.dispose()


def _report_json(report: VerifyReport) -> dict[str, object]:
    return {"ok": report.ok, "records": report.records, "first_broken": report.first_broken,
            "reason": report.reason, "checkpoints": report.checkpoints,
            "signed_through": report.signed_through, "last_seq": report.last_seq,
            "records_per_s": round(report.records_per_s)}


def _fail(message: str) -> NoReturn:
    click.echo(json.dumps({"error": {"type": "audit_error", "message": message}}), err=True)
    sys.exit(2)
