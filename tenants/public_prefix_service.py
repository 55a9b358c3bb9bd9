"""Platform-level public prefixes: versioned, immutable text shared across tenants."""

from __future__ import annotations

import logging

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tenants.database import Database
from tenants.errors import Conflict, NotFound
from tenants.models import PublicPrefix
from tenants.models.base import utcnow
from tenants.retry import retry_on_race
from tenants.schemas import PublicPrefixView
from tenants.validation import check_name, check_version, content_hash, normalize_content
from tenants.views import public_prefix_view

log = logging.getLogger("prefixgate.tenants")


class PublicPrefixService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def register(self, name: str, content: str) -> PublicPrefixView:
        """Store `content` as the next version of the public prefix `name`."""
        check_name(name)
        text = normalize_content(content)

        def attempt() -> PublicPrefixView:
            with self.db.session() as session:
                latest = session.scalar(
                    select(func.max(PublicPrefix.version)).where(PublicPrefix.name == name)
                )
                row = PublicPrefix(name=name, version=(latest or 0) + 1, content=text,
                                   content_hash=content_hash(text))
                session.add(row)
                session.flush()
                return public_prefix_view(row)

        view = retry_on_race(attempt)
        log.info("registered public prefix %s v%d", name, view.version)
        return view

    def list(self) -> list[PublicPrefixView]:
        with self.db.session() as session:
            rows = session.scalars(
                select(PublicPrefix).order_by(PublicPrefix.name, PublicPrefix.version)
            )
            return [public_prefix_view(row) for row in rows]

    def resolve(self, name: str, version: int | None = None) -> PublicPrefixView:
        """A given version, or (None) the newest non-retired one."""
        with self.db.session() as session:
            if version is None:
                row = session.scalar(
                    select(PublicPrefix)
                    .where(PublicPrefix.name == name, PublicPrefix.retired_at.is_(None))
                    .order_by(PublicPrefix.version.desc())
                    .limit(1)
                )
                if row is None:
                    load_public_prefix(session, name, None)
                    raise Conflict(f"every version of public prefix {name!r} is retired")
                return public_prefix_view(row)
            row = load_public_prefix(session, name, check_version(version))
            if row.retired_at is not None:
                raise Conflict(f"public prefix {name!r} version {version} is retired")
            return public_prefix_view(row)

    def retire(self, name: str, version: int) -> PublicPrefixView:
        with self.db.session() as session:
            row = load_public_prefix(session, name, check_version(version))
            if row.retired_at is not None:
                raise Conflict(f"public prefix {name!r} version {version} is already retired")
            row.retired_at = utcnow()
            session.flush()
            return public_prefix_view(row)


def load_public_prefix(session: Session, name: str, version: int | None) -> PublicPrefix:
    """The given version (or any version, for None) of a public prefix, else NotFound."""
    query = select(PublicPrefix).where(PublicPrefix.name == name)
    if version is not None:
        query = query.where(PublicPrefix.version == version)
    row = session.scalars(query.limit(1)).first()
    if row is None:
        what = f"public prefix {name!r}" + ("" if version is None else f" version {version}")
        raise NotFound(f"{what} not found")
    return row
