"""Create, read, change, suspend and delete tenants."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tenants import invalidation
from tenants.database import Database
from tenants.errors import Conflict, Invalid, NotFound
from tenants.ids import new_tenant_id
from tenants.models import Tenant
from tenants.schemas import Quotas, TenantView
from tenants.validation import check_cache_policy, check_name, check_status
from tenants.views import tenant_view

log = logging.getLogger("prefixgate.tenants")


class TenantService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(
        self, name: str, cache_policy: str = "tenant", quotas: Quotas | None = None
    ) -> TenantView:
        row = Tenant(id=new_tenant_id(), name=check_name(name), status="active",
                     cache_policy=check_cache_policy(cache_policy))
        _apply_quotas(row, quotas or Quotas())
        with _unique_name(name), self.db.session() as session:
            session.add(row)
            session.flush()
            view = tenant_view(row)
        log.info("created tenant %s (%s)", view.id, view.name)
        return view

    def get(self, tenant_id: str) -> TenantView:
        with self.db.session() as session:
            return tenant_view(load_tenant(session, tenant_id))

    def list(self) -> list[TenantView]:
        with self.db.session() as session:
            rows = session.scalars(select(Tenant).order_by(Tenant.created_at, Tenant.id))
            return [tenant_view(row) for row in rows]

    def update(
        self,
        tenant_id: str,
        *,
        name: str | None = None,
        cache_policy: str | None = None,
        quotas: Quotas | None = None,
        status: str | None = None,
    ) -> TenantView:
        with _unique_name(name), self.db.session() as session:
            row = load_tenant(session, tenant_id)
            if name is not None:
                row.name = check_name(name)
            if cache_policy is not None:
                row.cache_policy = check_cache_policy(cache_policy)
            if quotas is not None:
                _apply_quotas(row, quotas)
            if status is not None:
                row.status = check_status(status)
            session.flush()
            view = tenant_view(row)
        invalidation.tenant_changed(tenant_id)
        return view

    def suspend(self, tenant_id: str) -> TenantView:
        return self.update(tenant_id, status="suspended")

    def delete(self, tenant_id: str) -> TenantView:
        """Delete the tenant; its keys and prompt variants go with it (ON DELETE CASCADE)."""
        with self.db.session() as session:
            row = load_tenant(session, tenant_id)
            view = tenant_view(row)
            session.delete(row)
        invalidation.tenant_changed(tenant_id)
        log.info("deleted tenant %s (%s)", view.id, view.name)
        return view


def load_tenant(session: Session, tenant_id: str) -> Tenant:
    row = session.get(Tenant, tenant_id) if isinstance(tenant_id, str) else None
    if row is None:
        raise NotFound(f"tenant {tenant_id!r} not found")
    return row


def _apply_quotas(row: Tenant, quotas: Quotas) -> None:
    if not isinstance(quotas, Quotas):
        raise Invalid("quotas must be a Quotas")
    row.max_kv_share = quotas.max_kv_share
    row.requests_per_min = quotas.requests_per_min
    row.tokens_per_min = quotas.tokens_per_min
    row.public_prefix_sharing = quotas.public_prefix_sharing


@contextmanager
def _unique_name(name: str | None) -> Iterator[None]:
    """Turns a unique-constraint violation on the tenant name into Conflict."""
    try:
        yield
    except IntegrityError as exc:
        raise Conflict(f"a tenant named {name!r} already exists") from exc
