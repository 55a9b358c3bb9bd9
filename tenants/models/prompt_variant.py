"""A tenant's system-prompt variant: one immutable, content-hashed version of a named prompt."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, validates

from tenants.models.base import Base, UTCDateTime, utcnow
from tenants.models.immutable import refuse_change


class PromptVariant(Base):
    __tablename__ = "prompt_variants"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name", "version"),
        ForeignKeyConstraint(
            ["public_prefix_name", "public_prefix_version"],
            ["public_prefixes.name", "public_prefixes.version"],
            name="fk_prompt_variants_public_prefix",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    """Surrogate key."""
    tenant_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("tenants.id", ondelete="CASCADE")
    )
    """Owning tenant; deleting the tenant deletes its variants."""
    name: Mapped[str] = mapped_column(String(64))
    """Variant name, unique per tenant together with `version`."""
    version: Mapped[int] = mapped_column(Integer)
    """Monotonic per (tenant, name): previous max + 1."""
    content: Mapped[str] = mapped_column(Text)
    """NFC-normalized template text; immutable once stored."""
    variables: Mapped[list[str]] = mapped_column(JSON)
    """`{{var}}` names in order of first use, filled per request for personalization."""
    content_hash: Mapped[str] = mapped_column(String(64))
    """sha256 hex of `content`; part of the variant's cache namespace."""
    public_prefix_name: Mapped[str | None] = mapped_column(String(64))
    """Name of the public prefix this variant starts with, if any."""
    public_prefix_version: Mapped[int | None] = mapped_column(Integer)
    """Version of that public prefix."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    """When this version was registered."""
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """When this version was retired; None while it may be used."""

    @validates("tenant_id", "name", "version", "content", "content_hash", "variables",
               "public_prefix_name", "public_prefix_version")
    def _immutable(self, key: str, value: object) -> object:
        return refuse_change(self, key, value)
