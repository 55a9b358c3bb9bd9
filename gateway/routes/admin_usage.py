"""Admin API: a tenant's usage rollups, its token budgets and its cache/rate policy."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Any, Literal

from litestar import Controller, Request, get, put
from litestar.params import FromQuery, JSONBody, QueryParameter

from gateway.auth import admin_guard
from gateway.routes.params import TenantId
from gateway.runtime import Runtime
from gateway.schemas.usage import (
    BudgetBody,
    BudgetList,
    BudgetRead,
    UsageList,
    UsagePolicyBody,
    UsagePolicyRead,
    UsageRead,
)
from gateway.services.blocking import in_thread
from tenants.models.base import utcnow

Req = Request[Any, Any, Any]
DEFAULT_DAYS = 30


class UsageController(Controller):
    path = "/admin/tenants/{tenant_id:str}"
    guards = [admin_guard]  # noqa: RUF012 - Litestar reads this class attribute
    tags = ["admin"]  # noqa: RUF012

    @get("/usage")
    async def usage(
        self,
        request: Req,
        tenant_id: TenantId,
        from_: Annotated[date | None, QueryParameter(name="from")] = None,
        to: FromQuery[date | None] = None,
        group_by: FromQuery[Literal["day", "key", "variant"]] = "day",
    ) -> UsageList:
        """Usage per UTC day, key or variant over `from`..`to` (days, both included; default
        the last 30 days), from the rollups (requests of every outcome)."""
        end = to or utcnow().date()
        start = from_ or end - timedelta(days=DEFAULT_DAYS - 1)
        rows = await in_thread(Runtime.of(request).meter.usage.query, tenant_id, start, end,
                               group_by)
        return UsageList([UsageRead.of(r) for r in rows])

    @get("/usage-policy")
    async def get_policy(self, request: Req, tenant_id: TenantId) -> UsagePolicyRead:
        """Cache retention of unused prefixes (seconds), no-store, rate-limit accounting."""
        rt = Runtime.of(request)
        await in_thread(rt.tenants.get, tenant_id)
        return UsagePolicyRead.of(await in_thread(rt.meter.policies.get, tenant_id))

    @put("/usage-policy")
    async def set_policy(
        self, request: Req, tenant_id: TenantId, data: JSONBody[UsagePolicyBody]
    ) -> UsagePolicyRead:
        rt = Runtime.of(request)
        view = await in_thread(
            rt.meter.policies.set, tenant_id, cache_retention_s=data.cache_retention_s,
            no_store=data.no_store, rate_count_cached=data.rate_count_cached,
        )
        rt.meter.invalidate(tenant_id)
        return UsagePolicyRead.of(view)

    @get("/budgets")
    async def budgets(self, request: Req, tenant_id: TenantId) -> BudgetList:
        """Token budgets with what the current period used and holds."""
        rt = Runtime.of(request)
        await in_thread(rt.tenants.get, tenant_id)
        return BudgetList([BudgetRead.of(s) for s in
                           await in_thread(rt.meter.budgets.status, tenant_id)])

    @put("/budgets")
    async def set_budget(
        self, request: Req, tenant_id: TenantId, data: JSONBody[BudgetBody]
    ) -> BudgetList:
        rt = Runtime.of(request)
        await in_thread(rt.meter.budgets.set, tenant_id, data.period, data.tokens, data.key_id)
        rt.meter.invalidate(tenant_id)
        return BudgetList([BudgetRead.of(s) for s in
                           await in_thread(rt.meter.budgets.status, tenant_id)])
