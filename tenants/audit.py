"""Append-only audit trail with a hash chain; appends are serialized on the chain-head row."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from tenants.database import Database
from tenants.errors import Invalid
from tenants.models import AuditChainHead, AuditRecord
from tenants.models.base import utcnow
from tenants.schemas import AuditEntry, AuditRecordView
from tenants.views import audit_view

GENESIS_HASH = "0" * 64
_HEX = re.compile(r"[0-9a-f]{1,64}")
_OUTCOME = re.compile(r"[a-z][a-z0-9_]{0,31}")
_MAX_LIMIT = 1000


def record_hash(prev_hash: str, seq: int, created_at: datetime, entry: AuditEntry) -> str:
    """sha256 over prev_hash + the canonical JSON (sorted keys, no spaces) of the record."""
    body: dict[str, Any] = asdict(entry)
    body["reused_namespaces"] = list(entry.reused_namespaces)
    body["seq"] = seq
    body["created_at"] = created_at.isoformat(timespec="microseconds")
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(prev_hash.encode("ascii") + canonical.encode("ascii")).hexdigest()


def entry_of(record: AuditRecordView) -> AuditEntry:
    """The AuditEntry a stored record was made from (to recompute its hash)."""
    fields = {name: getattr(record, name) for name in AuditEntry.__dataclass_fields__}
    return AuditEntry(**fields)


class AuditStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        # SQLite serializes writers with a file lock and busy-wait; a thread lock spares the
        # polling within one process. PostgreSQL waits on the head row's lock instead.
        self._local_lock: AbstractContextManager[Any] = (
            threading.Lock() if db.dialect == "sqlite" else nullcontext()
        )

    def append(self, entry: AuditEntry) -> AuditRecordView:
        """Store `entry` as the next record of the chain; linear under concurrent appenders."""
        _check(entry)
        head = AuditChainHead.__table__
        with self._local_lock, self.db.session() as session:
            # NOTE: this UPDATE is the transaction's first statement: it takes the head row's
            # lock (PostgreSQL) or the write lock (SQLite) before the previous hash is read,
            # so no two appends can chain onto the same record.
            seq, prev_hash = session.execute(
                update(head).where(head.c.id == 1).values(seq=head.c.seq + 1)
                .returning(head.c.seq, head.c.hash)
            ).one()
            created_at = utcnow()
            digest = record_hash(prev_hash, seq, created_at, entry)
            row = AuditRecord(seq=seq, created_at=created_at, prev_hash=prev_hash, hash=digest,
                              **{**asdict(entry),
                                 "reused_namespaces": list(entry.reused_namespaces)})
            session.add(row)
            session.execute(update(head).where(head.c.id == 1).values(hash=digest))
            session.flush()
            return audit_view(row)

    def query(
        self,
        tenant_id: str | None = None,
        request_id: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[AuditRecordView]:
        """Matching records in chain order (oldest first), at most `limit` (1-1000)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= _MAX_LIMIT:
            raise Invalid(f"limit must be an integer in 1..{_MAX_LIMIT}")
        if since is not None and (not isinstance(since, datetime) or since.tzinfo is None):
            raise Invalid("since must be a timezone-aware datetime")
        query = select(AuditRecord).order_by(AuditRecord.seq).limit(limit)
        if tenant_id is not None:
            query = query.where(AuditRecord.tenant_id == tenant_id)
        if request_id is not None:
            query = query.where(AuditRecord.request_id == request_id)
        if since is not None:
            query = query.where(AuditRecord.created_at >= since)
        with self.db.session() as session:
            return [audit_view(row) for row in session.scalars(query)]


def _check(entry: AuditEntry) -> None:
    if not isinstance(entry, AuditEntry):
        raise Invalid("append takes an AuditEntry")
    for name, size in (("request_id", 64), ("tenant_id", 32)):
        value = getattr(entry, name)
        if not isinstance(value, str) or not 1 <= len(value) <= size:
            raise Invalid(f"{name} must be a string of 1-{size} characters")
    for name, size in (("key_id", 32), ("variant_name", 64), ("error_code", 64),
                       ("trace_id", 64)):
        value = getattr(entry, name)
        if value is not None and (not isinstance(value, str) or not 1 <= len(value) <= size):
            raise Invalid(f"{name} must be None or a string of 1-{size} characters")
    for name in ("prompt_tokens", "cached_tokens", "completion_tokens", "reused_blocks"):
        value = getattr(entry, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise Invalid(f"{name} must be a non-negative integer")
    version = entry.variant_version
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        raise Invalid("variant_version must be None or an integer")
    if entry.namespace is not None and (
        not isinstance(entry.namespace, str) or _HEX.fullmatch(entry.namespace) is None
    ):
        raise Invalid("namespace must be lowercase hex")
    if not isinstance(entry.reused_namespaces, tuple) or any(
        not isinstance(ns, str) or _HEX.fullmatch(ns) is None for ns in entry.reused_namespaces
    ):
        raise Invalid("reused_namespaces must be a tuple of lowercase hex strings")
    if not isinstance(entry.outcome, str) or _OUTCOME.fullmatch(entry.outcome) is None:
        raise Invalid("outcome must be a short lowercase word such as 'ok' or 'rejected'")
