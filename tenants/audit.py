"""Append-only audit trail with a hash chain; appends are serialized on the chain-head row.

With an `AuditSigner`, the append that makes record `seq` a multiple of the signer's interval
also stores a signed checkpoint in the same transaction, and `flush()` signs the head on demand
(at shutdown). What the signatures can and cannot prove is in `tenants/audit_verify.py`.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from tenants.audit_schemas import CheckpointView
from tenants.audit_signing import AuditSigner
from tenants.database import Database
from tenants.errors import Invalid
from tenants.models import AuditChainHead, AuditRecord
from tenants.models.audit_record import AuditCheckpoint
from tenants.models.base import utcnow
from tenants.schemas import AuditEntry, AuditRecordView
from tenants.views import audit_view

GENESIS_HASH = "0" * 64
_HEX = re.compile(r"[0-9a-f]{1,64}")
_OUTCOME = re.compile(r"[a-z][a-z0-9_]{0,31}")
_MAX_LIMIT = 1000
_PLAIN_JSON = re.compile(rb"[\x20-\x5b\x5d-\x7e]*")  # printable ASCII except backslash
_SORTED_JSON = msgspec.json.Encoder(order="sorted")
ENTRY_FIELDS: tuple[str, ...] = tuple(AuditEntry.__dataclass_fields__)
_HASHED_ALWAYS = tuple(name for name in ENTRY_FIELDS if name != "reused_block_ids")
# Statements built once: SQLAlchemy then reuses their memoized cache keys and compiled forms,
# where building them per append cost more than the SQLite transaction itself.
_HEAD = AuditChainHead.__table__
_TAKE_SEQS = (update(_HEAD).where(_HEAD.c.id == 1)
              .values(seq=_HEAD.c.seq + bindparam("count", type_=_HEAD.c.seq.type))
              .returning(_HEAD.c.seq, _HEAD.c.hash))
_SET_HEAD_HASH = update(_HEAD).where(_HEAD.c.id == 1).values(hash=bindparam("head_hash"))
_INSERT_RECORDS = insert(AuditRecord.__table__)
_INSERT_CHECKPOINTS = insert(AuditCheckpoint.__table__)


def record_hash(prev_hash: str, seq: int, created_at: datetime, entry: AuditEntry) -> str:
    """sha256 over prev_hash + the canonical JSON (sorted keys, no spaces) of the record."""
    return fields_hash(prev_hash, seq, created_at, asdict(entry))


def fields_hash(prev_hash: str, seq: int, created_at: datetime, fields: Mapping[str, Any]) -> str:
    """`record_hash` from a mapping holding every AuditEntry field (a row, a JSON object).

    `reused_block_ids` enters the hash only when non-empty: records written before it existed
    (NULL, or a row or export without the key) keep the encoding they were hashed with.
    """
    body: dict[str, Any] = {name: fields[name] for name in _HASHED_ALWAYS}
    body["reused_namespaces"] = list(body["reused_namespaces"])
    block_ids = fields.get("reused_block_ids")
    if block_ids:
        body["reused_block_ids"] = [[block, ns] for block, ns in block_ids]
    body["seq"] = seq
    body["created_at"] = created_at.isoformat(timespec="microseconds")
    return hashlib.sha256(prev_hash.encode("ascii") + canonical_json(body)).hexdigest()


def canonical_json(body: dict[str, Any]) -> bytes:
    """`json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)` as bytes.

    msgspec writes the same bytes several times faster whenever its output is printable ASCII
    with no escape at all (both then emit the plain characters; they escape DEL and non-ASCII
    differently); anything else takes the json path.
    """
    fast = _SORTED_JSON.encode(body)
    if _PLAIN_JSON.fullmatch(fast) is not None:
        return fast
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return text.encode("ascii")


def entry_of(record: AuditRecordView) -> AuditEntry:
    """The AuditEntry a stored record was made from (to recompute its hash)."""
    fields = {name: getattr(record, name) for name in AuditEntry.__dataclass_fields__}
    return AuditEntry(**fields)


class AuditStore:
    def __init__(self, db: Database, signer: AuditSigner | None = None) -> None:
        self.db = db
        self.signer = signer
        # SQLite serializes writers with a file lock and busy-wait; a thread lock spares the
        # polling within one process. PostgreSQL waits on the head row's lock instead.
        self._local_lock: AbstractContextManager[Any] = (
            threading.Lock() if db.dialect == "sqlite" else nullcontext()
        )

    def append(self, entry: AuditEntry) -> AuditRecordView:
        """Store `entry` as the next record of the chain; linear under concurrent appenders."""
        check_entry(entry)
        with self._local_lock, self.db.session() as session:
            (view,) = append_entries(session, [entry], self.signer)
            return view

    def flush(self) -> CheckpointView | None:
        """Sign the current head now (on demand, at shutdown); None without a signer or records.

        Returns the checkpoint covering the head, the existing one if it is already signed.
        """
        if self.signer is None:
            return None
        with self._local_lock, self.db.session() as session:
            return sign_head(session, self.signer)

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


def append_entries(
    session: Session, entries: Sequence[AuditEntry], signer: AuditSigner | None
) -> list[AuditRecordView]:
    """Chain `entries` (already checked) onto the head inside `session`'s transaction."""
    assert entries
    # NOTE: this UPDATE is the transaction's first statement: it takes the head row's lock
    # (PostgreSQL) or the write lock (SQLite) before the previous hash is read, so no two
    # appends can chain onto the same record. RETURNING gives the new seq, the old hash.
    last_seq, prev_hash = session.execute(_TAKE_SEQS, {"count": len(entries)}).one()
    views: list[AuditRecordView] = []
    rows: list[dict[str, Any]] = []
    checkpoints: list[dict[str, Any]] = []
    for seq, entry in enumerate(entries, start=last_seq - len(entries) + 1):
        created_at = utcnow()
        fields = {name: getattr(entry, name) for name in ENTRY_FIELDS}
        fields["reused_namespaces"] = tuple(entry.reused_namespaces)
        fields["reused_block_ids"] = tuple(entry.reused_block_ids)
        digest = fields_hash(prev_hash, seq, created_at, fields)
        view = AuditRecordView(seq=seq, created_at=created_at, prev_hash=prev_hash,
                               hash=digest, **fields)
        views.append(view)
        rows.append(_row(view, fields))
        if signer is not None and signer.due(seq):
            checkpoints.append(asdict(signer.sign(seq, digest, utcnow())))
        prev_hash = digest
    session.execute(_INSERT_RECORDS, rows)
    if checkpoints:
        session.execute(_INSERT_CHECKPOINTS, checkpoints)
    session.execute(_SET_HEAD_HASH, {"head_hash": prev_hash})
    return views


def sign_head(session: Session, signer: AuditSigner) -> CheckpointView | None:
    """Checkpoint the chain head (locked first) unless it is empty or already checkpointed."""
    head = AuditChainHead.__table__
    seq, digest = session.execute(
        update(head).where(head.c.id == 1).values(seq=head.c.seq)
        .returning(head.c.seq, head.c.hash)
    ).one()
    if seq == 0:
        return None
    existing = session.get(AuditCheckpoint, seq)
    if existing is not None:
        return checkpoint_view(existing)
    checkpoint = signer.sign(seq, digest, utcnow())
    session.execute(insert(AuditCheckpoint.__table__), [asdict(checkpoint)])
    return checkpoint


def checkpoint_view(row: AuditCheckpoint) -> CheckpointView:
    return CheckpointView(seq=row.seq, hash=row.hash, signed_at=row.signed_at,
                          key_id=row.key_id, signature=row.signature)


def _row(view: AuditRecordView, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The insert parameters of `view`, whose AuditEntry fields are `fields`."""
    row = dict(fields)
    row.update(seq=view.seq, created_at=view.created_at, prev_hash=view.prev_hash, hash=view.hash)
    row["reused_namespaces"] = list(view.reused_namespaces)
    row["reused_block_ids"] = [[block, ns] for block, ns in view.reused_block_ids]
    return row


def check_entry(entry: AuditEntry) -> None:
    """Validate an entry before it is chained (-> Invalid)."""
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
    check_block_ids(entry)
    if not isinstance(entry.outcome, str) or _OUTCOME.fullmatch(entry.outcome) is None:
        raise Invalid("outcome must be a short lowercase word such as 'ok' or 'rejected'")


def check_block_ids(entry: AuditEntry) -> None:
    """(block id, owner hex) pairs that agree with the block count and the distinct owners."""
    pairs = entry.reused_block_ids
    if not isinstance(pairs, tuple) or any(
        not isinstance(pair, tuple) or len(pair) != 2
        or isinstance(pair[0], bool) or not isinstance(pair[0], int) or pair[0] < 0
        or not isinstance(pair[1], str) or _HEX.fullmatch(pair[1]) is None
        for pair in pairs
    ):
        raise Invalid("reused_block_ids must be a tuple of (block id, lowercase hex) pairs")
    if pairs and (len(pairs) != entry.reused_blocks
                  or set(entry.reused_namespaces) != {ns for _, ns in pairs}):
        raise Invalid("reused_block_ids must list reused_blocks blocks owned by "
                      "reused_namespaces")
