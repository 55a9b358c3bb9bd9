"""Usage accounting: daily rollups per tenant/key/variant, and each tenant's cache policy.

Rollups are counters added to per request (group-committed by the gateway's meter), never a
scan of the audit trail; `tenants/usage.py` recomputes them from audit records to prove it.
Also declares the audit-trail indexes the usage/audit pages need at scale (they bind to
`audit_records` here so its model stays as the audit trail defines it).
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import BigInteger, Boolean, Date, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from tenants.models.audit_record import AuditRecord
from tenants.models.base import Base

DEFAULT_RETENTION_S = 300
MAX_RETENTION_S = 24 * 3600

# NOTE: "the tenant's newest page" (tenant filter ordered by seq) and "since" filters without a
# tenant would otherwise walk the primary key or sort a whole tenant's records.
Index("ix_audit_records_tenant_id_seq", AuditRecord.tenant_id, AuditRecord.seq)
Index("ix_audit_records_created_at", AuditRecord.created_at)


class UsageRollup(Base):
    """Counters of one (tenant, UTC day, key, variant); '' stands for "none" in key/variant."""

    __tablename__ = "usage_rollups"

    tenant_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    """Tenant billed (no foreign key: usage outlives a deleted tenant, like its audit trail)."""
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    """UTC day of the audit record's timestamp."""
    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    """API key used, '' when authentication did not name one."""
    variant: Mapped[str] = mapped_column(String(80), primary_key=True)
    """`name@version` of the prompt variant, '' for requests without one."""
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    """Audited requests (every outcome)."""
    rejections: Mapped[int] = mapped_column(BigInteger, default=0)
    """Requests refused (outcome `rejected`: rate limits, budgets, invalid input)."""
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    """Prompt tokens."""
    cached_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    """Prompt tokens read from the prefix cache."""
    cache_write_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    """Tokens newly written to the prefix cache (inserted blocks x block size)."""
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    """Generated tokens."""


class UsagePolicy(Base):
    """A tenant's cache retention and rate-limit accounting choices (defaults when absent)."""

    __tablename__ = "usage_policies"

    tenant_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    """The tenant; deleting it deletes its policy."""
    cache_retention_s: Mapped[int] = mapped_column(Integer, default=DEFAULT_RETENTION_S)
    """How long an unused cached prefix of the tenant may stay (1 s .. 24 h)."""
    no_store: Mapped[bool] = mapped_column(Boolean, default=False)
    """True: the tenant's KV is never put in the prefix cache."""
    rate_count_cached: Mapped[bool] = mapped_column(Boolean, default=True)
    """Whether prompt tokens read from the cache count toward tokens/min."""
