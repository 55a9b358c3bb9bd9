"""A tenant: the unit of isolation, billing and quotas."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from tenants.models.base import Base, UTCDateTime, utcnow


class Tenant(Base):
    __tablename__ = "tenants"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'suspended')", name="status"),
        CheckConstraint("cache_policy IN ('tenant', 'user', 'off')", name="cache_policy"),
        CheckConstraint("max_kv_share IS NULL OR (max_kv_share > 0 AND max_kv_share <= 1)",
                        name="max_kv_share"),
        CheckConstraint("requests_per_min IS NULL OR requests_per_min > 0",
                        name="requests_per_min"),
        CheckConstraint("tokens_per_min IS NULL OR tokens_per_min > 0", name="tokens_per_min"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    """Random id, `ten_<hex>`."""
    name: Mapped[str] = mapped_column(String(64), unique=True)
    """Human name, unique across the platform."""
    status: Mapped[str] = mapped_column(String(16), default="active")
    """`active` or `suspended` (a suspended tenant's keys are refused with 403)."""
    cache_policy: Mapped[str] = mapped_column(String(8), default="tenant")
    """KV reuse scope: `tenant` (share within), `user` (per end user) or `off`."""
    max_kv_share: Mapped[float | None] = mapped_column(Float)
    """Largest share of the KV pool this tenant's cached blocks may hold; None = no cap."""
    requests_per_min: Mapped[int | None] = mapped_column(Integer)
    """Request rate limit; None = unlimited."""
    tokens_per_min: Mapped[int | None] = mapped_column(Integer)
    """Token rate limit (prompt + completion); None = unlimited."""
    public_prefix_sharing: Mapped[bool] = mapped_column(Boolean, default=True)
    """Reuse/contribute platform public prefix blocks; False keeps them in own namespaces."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    """When the tenant was created."""
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    """Last change to any of the tenant's fields."""
