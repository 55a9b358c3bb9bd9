"""Archival of old audit records that keeps the hash chain verifiable.

Records up to a signed checkpoint are written to a JSON-lines file in the export format (so
`prefixgate audit verify --file` checks it offline with the public key alone), then deleted
from the database in one transaction that also records an `AuditAnchor`. The checkpoint at the
anchor stays in `audit_checkpoints`: it is the live chain's new, signed starting point, and
`verify_live` verifies from there. Chained archives link the same way: each file starts with
the previous anchor's checkpoint.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Connection, delete, insert, select

from tenants.audit_export import FORMAT
from tenants.audit_schemas import CheckpointView, VerifyReport
from tenants.audit_signing import DEFAULT_CHECKPOINT_EVERY
from tenants.audit_verify import DEFAULT_BATCH, checkpoints_between, stream_records, verify_chain
from tenants.database import Database
from tenants.errors import Invalid
from tenants.models import AuditAnchor, AuditRecord
from tenants.models.audit_record import AuditCheckpoint
from tenants.models.base import utcnow

_RECORDS = AuditRecord.__table__
_CHECKPOINTS = AuditCheckpoint.__table__
_ANCHORS = AuditAnchor.__table__


@dataclass(frozen=True, slots=True)
class ArchiveResult:
    path: Path
    first_seq: int
    last_seq: int
    records: int


def last_anchor(conn: Connection) -> CheckpointView | None:
    """The checkpoint the live chain starts from (None: it starts at the genesis)."""
    seq = conn.execute(select(_ANCHORS.c.seq).order_by(_ANCHORS.c.seq.desc()).limit(1)).scalar()
    if seq is None:
        return None
    row = conn.execute(select(_CHECKPOINTS).where(_CHECKPOINTS.c.seq == seq)).mappings().one()
    return CheckpointView(**row)


def archive_before(db: Database, before: datetime, directory: Path,
                   batch_size: int = DEFAULT_BATCH) -> ArchiveResult | None:
    """Archive the records up to the last checkpoint signed at or before `before` into
    `directory`; None when no such checkpoint lies beyond the current anchor."""
    if before.tzinfo is None:
        raise Invalid("before must be a timezone-aware datetime")
    with db.engine.connect() as conn:
        start = last_anchor(conn)
        after = start.seq if start is not None else 0
        row = conn.execute(
            select(_CHECKPOINTS).where(_CHECKPOINTS.c.signed_at <= before,
                                       _CHECKPOINTS.c.seq > after)
            .order_by(_CHECKPOINTS.c.seq.desc()).limit(1)).mappings().first()
        if row is None:
            return None
        anchor = CheckpointView(**row)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"audit-{after + 1:012d}-{anchor.seq:012d}.jsonl"
        with path.open("w", encoding="ascii") as out:
            records = _write(conn, out, start, anchor, batch_size)
            out.flush()
            os.fsync(out.fileno())
    with db.session() as session:  # the file is durable before anything is deleted
        session.execute(insert(_ANCHORS).values(seq=anchor.seq, hash=anchor.hash,
                                                first_seq=after + 1, location=str(path),
                                                archived_at=utcnow()))
        session.execute(delete(_RECORDS).where(_RECORDS.c.seq <= anchor.seq))
        session.execute(delete(_CHECKPOINTS).where(_CHECKPOINTS.c.seq < anchor.seq))
    return ArchiveResult(path, after + 1, anchor.seq, records)


def verify_live(db: Database, public_key: Ed25519PublicKey | None = None,
                checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY) -> VerifyReport:
    """`verify_chain` from the latest archive anchor (its signed checkpoint), or the genesis."""
    with db.engine.connect() as conn:
        start = last_anchor(conn)
    since = start.signed_at if start is not None else None
    return verify_chain(db, since=since, public_key=public_key,
                        checkpoint_every=checkpoint_every)


def _write(conn: Connection, out: TextIO, start: CheckpointView | None,
           anchor: CheckpointView, batch_size: int) -> int:
    _line(out, {"type": "header", "format": FORMAT, "complete": True, "tenant_id": None,
                "since": None, "start_seq": start.seq if start else 0, "head_seq": anchor.seq,
                "head_hash": anchor.hash, "exported_at": utcnow().isoformat()})
    if start is not None:
        _line(out, _checkpoint(start))
    after: int | None = start.seq if start is not None else None
    records = 0
    for rows in stream_records(conn, after, anchor.seq, batch_size):
        pending = iter(checkpoints_between(conn, after, rows[-1]["seq"]))
        cp = next(pending, None)
        for row in rows:
            _line(out, {"type": "record", **row, "created_at": row["created_at"].isoformat()})
            records += 1
            while cp is not None and cp.seq <= row["seq"]:
                _line(out, _checkpoint(cp))
                cp = next(pending, None)
        after = rows[-1]["seq"]
    return records


def _checkpoint(cp: CheckpointView) -> dict[str, Any]:
    return {"type": "checkpoint", **asdict(cp), "signed_at": cp.signed_at.isoformat()}


def _line(out: TextIO, item: dict[str, Any]) -> None:
    out.write(json.dumps(item, separators=(",", ":"), ensure_ascii=True) + "\n")
