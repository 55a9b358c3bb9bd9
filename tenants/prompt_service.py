"""A tenant's system-prompt variants: immutable, content-hashed, monotonically versioned."""

from __future__ import annotations

import logging

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tenants.database import Database
from tenants.errors import Conflict, Invalid, NotFound
from tenants.models import PromptVariant
from tenants.models.base import utcnow
from tenants.public_prefix_service import load_public_prefix
from tenants.retry import retry_on_race
from tenants.schemas import PromptVersionView
from tenants.tenant_service import load_tenant
from tenants.validation import (
    check_name,
    check_version,
    content_hash,
    normalize_content,
    template_variables,
)
from tenants.views import prompt_view

log = logging.getLogger("prefixgate.tenants")


class PromptService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def register(
        self,
        tenant_id: str,
        name: str,
        content: str,
        public_prefix: tuple[str, int] | None = None,
    ) -> PromptVersionView:
        """Store `content` as the next version of `name` (previous max + 1)."""
        check_name(name)
        text = normalize_content(content)
        variables = template_variables(text)
        if public_prefix is not None:
            if not isinstance(public_prefix, tuple | list) or len(public_prefix) != 2:
                raise Invalid("public_prefix must be (name, version)")
            public_prefix = (check_name(public_prefix[0], "public prefix name"),
                             check_version(public_prefix[1]))

        def attempt() -> PromptVersionView:
            with self.db.session() as session:
                load_tenant(session, tenant_id)
                if public_prefix is not None:
                    prefix = load_public_prefix(session, *public_prefix)
                    if prefix.retired_at is not None:
                        raise Conflict(f"public prefix {public_prefix[0]!r} version "
                                       f"{public_prefix[1]} is retired")
                latest = session.scalar(
                    select(func.max(PromptVariant.version))
                    .where(PromptVariant.tenant_id == tenant_id, PromptVariant.name == name)
                )
                row = PromptVariant(
                    tenant_id=tenant_id, name=name, version=(latest or 0) + 1, content=text,
                    variables=list(variables), content_hash=content_hash(text),
                    public_prefix_name=public_prefix[0] if public_prefix else None,
                    public_prefix_version=public_prefix[1] if public_prefix else None,
                )
                session.add(row)
                session.flush()
                return prompt_view(row)

        view = retry_on_race(attempt)
        log.info("registered prompt %s v%d for tenant %s", name, view.version, tenant_id)
        return view

    def resolve(self, tenant_id: str, name: str, version: int | None = None) -> PromptVersionView:
        """A given version, or (None) the newest non-retired one."""
        with self.db.session() as session:
            load_tenant(session, tenant_id)
            if version is None:
                return prompt_view(_newest_live(session, tenant_id, name))
            row = _load_version(session, tenant_id, name, check_version(version))
            if row.retired_at is not None:
                raise Conflict(f"prompt {name!r} version {version} is retired")
            return prompt_view(row)

    def list(self, tenant_id: str) -> list[PromptVersionView]:
        with self.db.session() as session:
            load_tenant(session, tenant_id)
            rows = session.scalars(
                select(PromptVariant).where(PromptVariant.tenant_id == tenant_id)
                .order_by(PromptVariant.name, PromptVariant.version)
            )
            return [prompt_view(row) for row in rows]

    def retire(self, tenant_id: str, name: str, version: int) -> PromptVersionView:
        with self.db.session() as session:
            load_tenant(session, tenant_id)
            row = _load_version(session, tenant_id, name, check_version(version))
            if row.retired_at is not None:
                raise Conflict(f"prompt {name!r} version {version} is already retired")
            row.retired_at = utcnow()
            session.flush()
            return prompt_view(row)


def _load_version(session: Session, tenant_id: str, name: str, version: int) -> PromptVariant:
    row = session.scalar(
        select(PromptVariant).where(
            PromptVariant.tenant_id == tenant_id,
            PromptVariant.name == name,
            PromptVariant.version == version,
        )
    )
    if row is None:
        raise NotFound(f"prompt {name!r} version {version} not found")
    return row


def _newest_live(session: Session, tenant_id: str, name: str) -> PromptVariant:
    rows = session.scalars(
        select(PromptVariant)
        .where(PromptVariant.tenant_id == tenant_id, PromptVariant.name == name)
        .order_by(PromptVariant.version.desc())
    ).all()
    if not rows:
        raise NotFound(f"prompt {name!r} not found")
    for row in rows:
        if row.retired_at is None:
            return row
    raise Conflict(f"every version of prompt {name!r} is retired")
