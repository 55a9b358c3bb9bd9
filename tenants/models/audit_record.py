"""Audit trail: one hash-chained record per request, plus the chain head that serializes appends."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from tenants.models.base import Base, UTCDateTime


class AuditRecord(Base):
    __tablename__ = "audit_records"
    __table_args__ = (
        Index("ix_audit_records_tenant_id_created_at", "tenant_id", "created_at"),
        Index("ix_audit_records_request_id", "request_id"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    """Position in the chain: 1, 2, ... without gaps."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    """When the record was appended."""
    request_id: Mapped[str] = mapped_column(String(64))
    """The request's `x-request-id`."""
    tenant_id: Mapped[str] = mapped_column(String(32))
    """Tenant the request acted for (no foreign key: records outlive deleted tenants)."""
    key_id: Mapped[str | None] = mapped_column(String(32))
    """API key used, if authentication got that far."""
    namespace: Mapped[str | None] = mapped_column(String(64))
    """Hex cache namespace the request ran in."""
    variant_name: Mapped[str | None] = mapped_column(String(64))
    """Prompt variant name, if the request used one."""
    variant_version: Mapped[int | None] = mapped_column(Integer)
    """Prompt variant version, if the request used one."""
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    """Prompt length in tokens."""
    cached_tokens: Mapped[int] = mapped_column(Integer)
    """Prompt tokens served from reused KV blocks."""
    completion_tokens: Mapped[int] = mapped_column(Integer)
    """Generated tokens."""
    reused_blocks: Mapped[int] = mapped_column(Integer)
    """Number of KV blocks reused."""
    reused_namespaces: Mapped[list[str]] = mapped_column(JSON)
    """Hex owner namespaces of the reused blocks (distinct)."""
    reused_block_ids: Mapped[list[list[int | str]] | None] = mapped_column(JSON, nullable=True)
    """Every reused block as [block_id, owner namespace hex], in prompt order (NULL: written
    before block ids were recorded, migration 0003)."""
    outcome: Mapped[str] = mapped_column(String(32))
    """`ok`, `rejected`, `error`, `isolation_violation`, ..."""
    error_code: Mapped[str | None] = mapped_column(String(64))
    """Error code answered, if any."""
    trace_id: Mapped[str | None] = mapped_column(String(64))
    """OpenTelemetry trace id, if traced."""
    prev_hash: Mapped[str] = mapped_column(String(64))
    """`hash` of record `seq - 1` (64 zeros for the first)."""
    hash: Mapped[str] = mapped_column(String(64))
    """sha256 over `prev_hash` and the canonical encoding of this record."""


class AuditChainHead(Base):
    """The single row (id 1) holding the chain's last seq and hash; appends lock it."""

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    """Always 1."""
    seq: Mapped[int] = mapped_column(BigInteger)
    """seq of the last appended record (0 before the first)."""
    hash: Mapped[str] = mapped_column(String(64))
    """hash of the last appended record (64 zeros before the first)."""


class AuditCheckpoint(Base):
    """A signed statement "the chain's record `seq` has hash `hash`" made with the server key."""

    __tablename__ = "audit_checkpoints"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    """Last record the checkpoint covers."""
    hash: Mapped[str] = mapped_column(String(64))
    """`hash` of record `seq`: the signature binds every record up to it through the chain."""
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    """When it was signed (signed too); `verify --since` starts from the last one before."""
    key_id: Mapped[str] = mapped_column(String(16))
    """First 16 hex digits of sha256 over the raw Ed25519 public key that signed it."""
    signature: Mapped[str] = mapped_column(String(128))
    """Hex Ed25519 signature over `checkpoint_message(seq, hash, signed_at, key_id)`."""
