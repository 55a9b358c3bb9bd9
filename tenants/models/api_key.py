"""An API key: stored as the hash of its secret, never the secret itself."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from tenants.models.base import Base, UTCDateTime, utcnow


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    """Random id, `key_<hex>`; embedded in the token so lookup is by id, not by scan."""
    tenant_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    """Owning tenant; deleting the tenant deletes its keys."""
    name: Mapped[str | None] = mapped_column(String(64))
    """Optional label chosen by the operator."""
    prefix: Mapped[str] = mapped_column(String(32))
    """Non-secret head of the token, for display (`pgk_key_<hex>`)."""
    secret_hash: Mapped[str] = mapped_column(String(64))
    """sha256 hex of the secret; the secret is shown once at issue and never stored."""
    scopes: Mapped[list[str]] = mapped_column(JSON)
    """What the key may do, e.g. `["inference"]`."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    """When the key was issued."""
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """Last successful authentication seen by a cold lookup (coarse, at most once a minute)."""
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """When the key was revoked; None while it is valid."""
