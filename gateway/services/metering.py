"""Per-request metering around a job: budget reservation, cache retention, settlement.

`admit(job)` runs after the job is built (rate limits already taken) and before the engine sees
it: it applies the tenant's cache retention / no-store to the job's namespaces in the radix
tree and reserves prompt + max_tokens on the tenant's and key's budgets (429 naming the budget
when it does not fit). `finish(request_id)` runs right before the job's audit record is
written: it hands the tokens written to the cache to the metered audit writer (which adds the
usage to the rollups in the audit transaction), refunds rate-limit tokens not consumed, and
settles the budget reservation with the tokens actually used.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from gateway.errors import ApiError
from gateway.services.blocking import in_thread
from gateway.services.jobs import Job
from gateway.services.render import usage_of
from tenants.budget import BudgetExceeded, BudgetService, Reservation
from tenants.usage import UsageStore
from tenants.usage_policy import UsagePolicyService, UsagePolicyView

if TYPE_CHECKING:
    from gateway.runtime import Runtime


@dataclass(frozen=True, slots=True)
class TenantMetering:
    policy: UsagePolicyView
    has_budgets: bool
    loaded_at: float


@dataclass(frozen=True, slots=True)
class OpenJob:
    job: Job
    policy: UsagePolicyView
    reservation: Reservation | None
    charged: int  # tokens the rate limiter took up front


def charged_tokens(job: Job) -> int:
    """What `JobBuilder` charged the tokens/min bucket: every prompt + max_tokens per choice."""
    return sum(p.num_tokens for p in job.prompts) + job.sampling.max_tokens * job.num_choices


class Meter:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.usage = UsageStore(runtime.db)
        self.budgets = BudgetService(runtime.db)
        self.policies = UsagePolicyService(runtime.db)
        self._tenants: dict[str, TenantMetering] = {}
        self._applied: dict[bytes, tuple[float, bool]] = {}
        self._open: dict[str, OpenJob] = {}

    async def admit(self, job: Job) -> None:
        p = job.principal
        metering = await self.tenant(p.tenant_id)
        self._apply_retention(job, metering.policy)
        reservation = None
        if metering.has_budgets:
            try:
                reservation = await in_thread(self.budgets.reserve, p.tenant_id, p.key_id,
                                              charged_tokens(job))
            except BudgetExceeded as exc:  # the request is refused: its tokens/min go back
                await in_thread(self.rt.limiter.refund, p.tenant_id, p.quotas.tokens_per_min,
                                charged_tokens(job))
                raise ApiError(429, str(exc), "budget_exceeded", None,
                               _until_period_end(exc.budget.period)) from exc
        self._open[job.request_id] = OpenJob(job, metering.policy, reservation,
                                             charged_tokens(job))

    async def finish(self, request_id: str) -> None:
        """Settle an admitted job (a no-op for one refused before admission)."""
        open_job = self._open.pop(request_id, None)
        if open_job is None:
            return
        job = open_job.job
        usage = usage_of(job, job.outputs)
        self.rt.audit_writer.note_cache_writes(request_id, usage.cache_creation_input_tokens)
        used = usage.prompt_tokens + usage.completion_tokens
        counted = used
        if not open_job.policy.rate_count_cached:
            counted -= usage.prompt_tokens_details.cached_tokens
        p = job.principal
        if p.quotas.tokens_per_min is not None and open_job.charged > counted:
            await in_thread(self.rt.limiter.refund, p.tenant_id, p.quotas.tokens_per_min,
                            open_job.charged - counted)
        if open_job.reservation is not None:
            await in_thread(self.budgets.settle, open_job.reservation, used)

    async def tenant(self, tenant_id: str) -> TenantMetering:
        """The tenant's policy and whether it has budgets (cached for auth_cache_ttl_s)."""
        cached = self._tenants.get(tenant_id)
        now = time.monotonic()
        if cached is not None and now - cached.loaded_at < self.rt.settings.auth_cache_ttl_s:
            return cached
        policy = await in_thread(self.policies.get, tenant_id)
        has_budgets = bool(await in_thread(self.budgets.list, tenant_id))
        fresh = TenantMetering(policy, has_budgets, now)
        self._tenants[tenant_id] = fresh
        return fresh

    def invalidate(self, tenant_id: str) -> None:
        self._tenants.pop(tenant_id, None)

    async def apply_retention(self, tenant_id: str, namespaces: Iterable[bytes]) -> None:
        """The tenant's TTL / no-store on namespaces about to be filled outside a request
        (an admin `warm`), so a no-store tenant's prompt is not cached that way either."""
        policy = (await self.tenant(tenant_id)).policy
        self._apply(namespaces, policy)

    def _apply_retention(self, job: Job, policy: UsagePolicyView) -> None:
        self._apply(job.allowed_namespaces, policy)

    def _apply(self, namespaces: Iterable[bytes], policy: UsagePolicyView) -> None:
        """Tell the radix tree the TTL / no-store of a tenant's own (non-public) namespaces."""
        setting = (float(policy.cache_retention_s), not policy.no_store)
        for ns in namespaces:
            label = self.rt.namespaces.label(ns)
            if label is not None and label.scope == "public":
                continue
            if self._applied.get(ns) != setting:
                if policy.no_store:  # what was cached before goes too (drop resets retention)
                    self.rt.engine.drop_namespaces([ns])
                self.rt.engine.set_retention(ns, setting[0], setting[1])
                self._applied[ns] = setting


def _until_period_end(period: str) -> float:
    now = datetime.now(UTC)
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        end = start + timedelta(days=1)
    else:
        end = (start.replace(day=1) + timedelta(days=32)).replace(day=1)
    return (end - now).total_seconds()
