"""Token buckets shared by gateway replicas when rate limits live in PostgreSQL."""

from __future__ import annotations

from sqlalchemy import Float, String
from sqlalchemy.orm import Mapped, mapped_column

from tenants.models.base import Base


class RateBucket(Base):
    __tablename__ = "usage_rate_buckets"

    name: Mapped[str] = mapped_column(String(96), primary_key=True)
    """`<tenant id>:<req|tok>`."""
    level: Mapped[float] = mapped_column(Float)
    """Allowance left at `stamp`."""
    stamp: Mapped[float] = mapped_column(Float)
    """Unix time (database clock) of the last refill."""
