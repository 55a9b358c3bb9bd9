"""JSON-lines export of the audit trail, and the offline verifier that needs only the public key.

File layout, one JSON object a line, each with a `type`:
  header      format, complete, tenant_id, since, start_seq, head_seq, head_hash, exported_at
  checkpoint  seq, hash, signed_at, key_id, signature (the start checkpoint first when
              `since` is given, then each right after the record it covers)
  record      every stored field of one record, in seq order
A `tenant_id` export holds only that tenant's records: it is for review, not verifiable as a
chain (the other records' fields are needed to recompute the links), and the verifier says so.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, TextIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select

from tenants.audit import GENESIS_HASH
from tenants.audit_chain import ChainChecker
from tenants.audit_schemas import CheckpointView, VerifyReport
from tenants.audit_signing import DEFAULT_CHECKPOINT_EVERY, checkpoint_problem
from tenants.audit_verify import (
    DEFAULT_BATCH,
    checkpoints_between,
    start_checkpoint,
    stream_records,
)
from tenants.database import Database
from tenants.errors import Invalid
from tenants.models import AuditChainHead
from tenants.models.base import utcnow

FORMAT = "prefixgate-audit-export/1"
_HEAD = AuditChainHead.__table__


@dataclass(frozen=True, slots=True)
class ExportSummary:
    records: int
    checkpoints: int
    start_seq: int
    head_seq: int
    complete: bool


def export_jsonl(db: Database, out: TextIO, *, since: datetime | None = None,
                 tenant_id: str | None = None, batch_size: int = DEFAULT_BATCH) -> ExportSummary:
    """Write the chain (from the last checkpoint at or before `since`) to `out` as JSON lines."""
    if since is not None and (not isinstance(since, datetime) or since.tzinfo is None):
        raise Invalid("since must be a timezone-aware datetime")
    records = checkpoints = 0
    with db.engine.connect() as conn:
        head_seq, head_hash = conn.execute(select(_HEAD.c.seq, _HEAD.c.hash)
                                           .where(_HEAD.c.id == 1)).one()
        start = start_checkpoint(conn, since) if since is not None else None
        start_seq = start.seq if start is not None else 0
        _line(out, {"type": "header", "format": FORMAT, "complete": tenant_id is None,
                    "tenant_id": tenant_id, "since": since.isoformat() if since else None,
                    "start_seq": start_seq, "head_seq": head_seq, "head_hash": head_hash,
                    "exported_at": utcnow().isoformat()})
        if start is not None:
            _line(out, _checkpoint_json(start))
            checkpoints += 1
        after: int | None = start.seq if start is not None else None
        for rows in stream_records(conn, after, head_seq, batch_size):
            pending = iter(checkpoints_between(conn, after, rows[-1]["seq"]))
            cp = next(pending, None)
            for row in rows:
                if tenant_id is None or row["tenant_id"] == tenant_id:
                    _line(out, {"type": "record", **row,
                                "created_at": row["created_at"].isoformat()})
                    records += 1
                while cp is not None and cp.seq <= row["seq"]:
                    _line(out, _checkpoint_json(cp))
                    checkpoints += 1
                    cp = next(pending, None)
            after = rows[-1]["seq"]
    return ExportSummary(records, checkpoints, start_seq, head_seq, tenant_id is None)


def verify_export(lines: Iterable[str], public_key: Ed25519PublicKey,
                  checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY) -> VerifyReport:
    """Check an export file offline: same checks as `verify_chain`, trusting only the key."""
    started = time.perf_counter()
    stream = iter(enumerate(lines, start=1))
    header = _parse(next(stream, (1, ""))[1])
    if header is None or header.get("type") != "header" or header.get("format") != FORMAT:
        return _failed(0, f"not a {FORMAT} file (bad or missing header line)", started)
    if not header.get("complete"):
        return _failed(0, "a tenant-filtered export holds only part of the chain and cannot be "
                          "verified; export without --tenant", started)
    checker = ChainChecker(public_key, checkpoint_every)
    start_seq = header.get("start_seq", 0)
    for number, text in stream:
        item = _parse(text)
        kind = item.get("type") if item is not None else None
        if item is None or kind not in ("record", "checkpoint"):
            checker.first_broken, checker.reason = checker.next_seq, f"line {number} is unreadable"
            break
        if kind == "checkpoint" and start_seq and checker.records == 0 and checker.next_seq == 1:
            try:
                cp = _checkpoint_of(item)
            except (KeyError, TypeError, ValueError):
                return _failed(start_seq, f"line {number} is malformed", started)
            problem = checkpoint_problem(cp, public_key) if cp.seq == start_seq else "wrong seq"
            if problem is not None:
                return _failed(start_seq, f"starting checkpoint: {problem}", started)
            checker = ChainChecker(public_key, checkpoint_every, cp.seq, cp.hash)
            checker.checkpoints = 1
            continue
        try:
            ok = (checker.add_record(_record_of(item)) if kind == "record"
                  else checker.add_checkpoint(_checkpoint_of(item)))
        except (KeyError, TypeError, ValueError):
            checker.first_broken, checker.reason = checker.next_seq, f"line {number} is malformed"
            break
        if not ok:
            break
    else:
        if start_seq and checker.next_seq == 1:
            return _failed(start_seq, "the starting checkpoint line is missing", started)
        checker.finish((header.get("head_seq", 0), header.get("head_hash", GENESIS_HASH)))
    return checker.report(time.perf_counter() - started)


def _checkpoint_json(cp: CheckpointView) -> dict[str, Any]:
    return {"type": "checkpoint", **asdict(cp), "signed_at": cp.signed_at.isoformat()}


def _checkpoint_of(item: dict[str, Any]) -> CheckpointView:
    return CheckpointView(seq=int(item["seq"]), hash=str(item["hash"]),
                          signed_at=datetime.fromisoformat(item["signed_at"]),
                          key_id=str(item["key_id"]), signature=str(item["signature"]))


def _record_of(item: dict[str, Any]) -> dict[str, Any]:
    return {**item, "created_at": datetime.fromisoformat(item["created_at"])}


def _parse(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _line(out: TextIO, item: dict[str, Any]) -> None:
    out.write(json.dumps(item, separators=(",", ":"), ensure_ascii=True) + "\n")


def _failed(seq: int, reason: str, started: float) -> VerifyReport:
    return VerifyReport(ok=False, records=0, first_broken=seq, reason=reason,
                        elapsed_s=time.perf_counter() - started)
