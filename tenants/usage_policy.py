"""A tenant's cache retention, no-store and rate-limit accounting choices."""

from __future__ import annotations

from dataclasses import dataclass

from tenants.database import Database
from tenants.errors import Invalid
from tenants.models import UsagePolicy
from tenants.models.usage import DEFAULT_RETENTION_S, MAX_RETENTION_S
from tenants.tenant_service import load_tenant


@dataclass(frozen=True, slots=True)
class UsagePolicyView:
    tenant_id: str
    cache_retention_s: int = DEFAULT_RETENTION_S
    no_store: bool = False
    rate_count_cached: bool = True


class UsagePolicyService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, tenant_id: str) -> UsagePolicyView:
        """The tenant's policy (the defaults when none was set)."""
        with self.db.session() as session:
            row = session.get(UsagePolicy, tenant_id)
            return _view(row) if row is not None else UsagePolicyView(tenant_id)

    def set(self, tenant_id: str, *, cache_retention_s: int | None = None,
            no_store: bool | None = None,
            rate_count_cached: bool | None = None) -> UsagePolicyView:
        """Change the given fields (the others keep their value)."""
        if cache_retention_s is not None and (
            isinstance(cache_retention_s, bool) or not isinstance(cache_retention_s, int)
            or not 1 <= cache_retention_s <= MAX_RETENTION_S
        ):
            raise Invalid(f"cache_retention_s must be an integer in 1..{MAX_RETENTION_S}")
        with self.db.session() as session:
            load_tenant(session, tenant_id)
            row = session.get(UsagePolicy, tenant_id)
            if row is None:
                row = UsagePolicy(tenant_id=tenant_id, cache_retention_s=DEFAULT_RETENTION_S,
                                  no_store=False, rate_count_cached=True)
                session.add(row)
            if cache_retention_s is not None:
                row.cache_retention_s = cache_retention_s
            if no_store is not None:
                row.no_store = bool(no_store)
            if rate_count_cached is not None:
                row.rate_count_cached = bool(rate_count_cached)
            session.flush()
            return _view(row)


def _view(row: UsagePolicy) -> UsagePolicyView:
    return UsagePolicyView(row.tenant_id, row.cache_retention_s, row.no_store,
                           row.rate_count_cached)
