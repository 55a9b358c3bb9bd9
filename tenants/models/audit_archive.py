"""Where the live audit chain starts after older records were archived."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from tenants.models.base import Base, UTCDateTime


class AuditAnchor(Base):
    """One archival: records up to `seq` moved to `location`; the signed checkpoint at `seq`
    (kept in `audit_checkpoints`) is the live chain's new starting point."""

    __tablename__ = "audit_anchors"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    """Last archived record; a signed checkpoint covers it."""
    hash: Mapped[str] = mapped_column(String(64))
    """`hash` of record `seq` (equal to the checkpoint's)."""
    first_seq: Mapped[int] = mapped_column(BigInteger)
    """First record of this archive."""
    location: Mapped[str] = mapped_column(String(512))
    """The JSON-lines archive file (verifiable offline with `audit verify-export`)."""
    archived_at: Mapped[datetime] = mapped_column(UTCDateTime)
    """When the records were moved."""
