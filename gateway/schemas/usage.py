"""Admin API bodies for usage, budgets and a tenant's cache/rate policy."""

from __future__ import annotations

from typing import Literal

import msgspec

from tenants.budget import BudgetStatus
from tenants.usage import UsageRow
from tenants.usage_policy import UsagePolicyView


class UsageRead(msgspec.Struct):
    """One group: `period` is the UTC day (YYYY-MM-DD), the key id or `name@version`;
    `(none)` groups requests without a key or a variant."""

    period: str
    requests: int
    prompt_tokens: int
    cached_tokens: int
    cache_write_tokens: int
    completion_tokens: int

    @classmethod
    def of(cls, row: UsageRow) -> UsageRead:
        return cls(row.period, row.requests, row.prompt_tokens, row.cached_tokens,
                   row.cache_write_tokens, row.completion_tokens)


class UsageList(msgspec.Struct):
    data: list[UsageRead]


class UsagePolicyBody(msgspec.Struct, forbid_unknown_fields=True):
    """Fields to change; absent ones keep their value."""

    cache_retention_s: int | None = None
    no_store: bool | None = None
    rate_count_cached: bool | None = None


class UsagePolicyRead(msgspec.Struct):
    tenant_id: str
    cache_retention_s: int
    no_store: bool
    rate_count_cached: bool

    @classmethod
    def of(cls, v: UsagePolicyView) -> UsagePolicyRead:
        return cls(v.tenant_id, v.cache_retention_s, v.no_store, v.rate_count_cached)


class BudgetBody(msgspec.Struct, forbid_unknown_fields=True):
    """`tokens: null` removes the budget; `key_id` absent: the whole tenant's budget."""

    period: Literal["day", "month"]
    tokens: int | None
    key_id: str | None = None


class BudgetRead(msgspec.Struct):
    key_id: str | None
    period: str
    tokens: int
    period_start: str
    used: int
    reserved: int

    @classmethod
    def of(cls, s: BudgetStatus) -> BudgetRead:
        b = s.budget
        return cls(b.key_id, b.period, b.tokens, s.period_start.isoformat(), s.used, s.reserved)


class BudgetList(msgspec.Struct):
    data: list[BudgetRead]
