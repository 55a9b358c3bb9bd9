"""A platform-level public prefix: versioned, immutable text that tenants may start from."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, validates

from tenants.models.base import Base, UTCDateTime, utcnow
from tenants.models.immutable import refuse_change


class PublicPrefix(Base):
    __tablename__ = "public_prefixes"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    """Surrogate key."""
    name: Mapped[str] = mapped_column(String(64))
    """Prefix name (1-64 of [A-Za-z0-9_.-])."""
    version: Mapped[int] = mapped_column(Integer)
    """1, 2, ... per name; a content change is a new version."""
    content: Mapped[str] = mapped_column(Text)
    """NFC-normalized text; immutable once stored."""
    content_hash: Mapped[str] = mapped_column(String(64))
    """sha256 hex of `content`."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    """When this version was registered."""
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """When this version was retired; None while it may be used."""

    @validates("name", "version", "content", "content_hash")
    def _immutable(self, key: str, value: object) -> object:
        return refuse_change(self, key, value)
