"""Issue, list, revoke and rotate API keys; only the sha256 of a secret is ever stored."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from tenants import invalidation
from tenants.database import Database
from tenants.errors import Conflict, Invalid, NotFound
from tenants.ids import display_prefix, key_token, new_key_id, new_secret, secret_hash
from tenants.models import ApiKey
from tenants.models.base import utcnow
from tenants.schemas import ApiKeyView, IssuedKey
from tenants.tenant_service import load_tenant
from tenants.validation import check_name
from tenants.views import key_view

log = logging.getLogger("prefixgate.tenants")


class KeyService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def issue(
        self, tenant_id: str, name: str | None = None, scopes: tuple[str, ...] = ("inference",)
    ) -> IssuedKey:
        scopes = _check_scopes(scopes)
        if name is not None:
            check_name(name, "key name")
        with self.db.session() as session:
            load_tenant(session, tenant_id)
            issued = _add_key(session, tenant_id, name, scopes)
        log.info("issued key %s for tenant %s", issued.id, tenant_id)
        return issued

    def list(self, tenant_id: str) -> list[ApiKeyView]:
        with self.db.session() as session:
            load_tenant(session, tenant_id)
            rows = session.scalars(
                select(ApiKey).where(ApiKey.tenant_id == tenant_id)
                .order_by(ApiKey.created_at, ApiKey.id)
            )
            return [key_view(row) for row in rows]

    def revoke(self, tenant_id: str, key_id: str) -> ApiKeyView:
        with self.db.session() as session:
            row = _load_live_key(session, tenant_id, key_id)
            row.revoked_at = utcnow()
            session.flush()
            view = key_view(row)
        invalidation.key_changed(key_id)
        log.info("revoked key %s of tenant %s", key_id, tenant_id)
        return view

    def rotate(self, tenant_id: str, key_id: str) -> IssuedKey:
        """Revoke the key and issue a new one with the same name and scopes, atomically."""
        with self.db.session() as session:
            old = _load_live_key(session, tenant_id, key_id)
            old.revoked_at = utcnow()
            issued = _add_key(session, tenant_id, old.name, tuple(old.scopes))
        invalidation.key_changed(key_id)
        log.info("rotated key %s of tenant %s into %s", key_id, tenant_id, issued.id)
        return issued


def _add_key(
    session: Session, tenant_id: str, name: str | None, scopes: tuple[str, ...]
) -> IssuedKey:
    key_id, secret = new_key_id(), new_secret()
    session.add(ApiKey(id=key_id, tenant_id=tenant_id, name=name, prefix=display_prefix(key_id),
                       secret_hash=secret_hash(secret), scopes=list(scopes)))
    session.flush()
    return IssuedKey(id=key_id, key=key_token(key_id, secret), prefix=display_prefix(key_id))


def _load_live_key(session: Session, tenant_id: str, key_id: str) -> ApiKey:
    load_tenant(session, tenant_id)
    row = session.get(ApiKey, key_id) if isinstance(key_id, str) else None
    if row is None or row.tenant_id != tenant_id:
        raise NotFound(f"key {key_id!r} not found")
    if row.revoked_at is not None:
        raise Conflict(f"key {key_id!r} is already revoked")
    return row


def _check_scopes(scopes: object) -> tuple[str, ...]:
    if isinstance(scopes, str) or not isinstance(scopes, tuple | list) or not scopes:
        raise Invalid("scopes must be a non-empty list of names")
    return tuple(dict.fromkeys(check_name(scope, "scope") for scope in scopes))
