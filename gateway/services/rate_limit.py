"""Per-tenant request and token quotas (requests/min, tokens/min) as token buckets.

A bucket holds up to one minute's allowance and refills continuously; a request that finds
too little in either bucket is refused with 429 and a Retry-After of when it would fit. Tokens
are charged up front (prompt + max_tokens) and the unused part is refunded when the request
ends (and, where the tenant's policy says so, the prompt tokens read from the cache).

Where the buckets live (`gateway/services/rate_stores.py`): in this process (one gateway), or
shared by every replica in the database (`rate_limit_store=db`) or in Redis
(`rate_limit_store=redis`, `redis_url`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.errors import ApiError
from gateway.services.rate_stores import (
    LocalRateStore,
    RateStore,
    RedisRateStore,
    SqlRateStore,
    Take,
)
from tenants.database import Database

STORES = ("local", "db", "redis")


class RateLimiter:
    """Token buckets per (tenant, kind); the capacity follows the tenant's current quota."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, store: RateStore | None = None
    ) -> None:
        self.store: RateStore = store if store is not None else LocalRateStore(clock)

    @classmethod
    def of(cls, kind: str, db: Database, redis_url: str | None) -> RateLimiter:
        """The limiter for `rate_limit_store` = local | db | redis."""
        if kind == "local":
            return cls()
        if kind == "db":
            return cls(store=SqlRateStore(db))
        if kind == "redis":
            if not redis_url:
                raise ValueError("rate_limit_store=redis needs redis_url")
            return cls(store=RedisRateStore(redis_url))
        raise ValueError(f"rate_limit_store must be one of {', '.join(STORES)}, got {kind!r}")

    def acquire(
        self,
        tenant_id: str,
        requests_per_min: int | None,
        tokens_per_min: int | None,
        tokens: int,
    ) -> None:
        """Take one request and `tokens` tokens, or raise ApiError(429) taking nothing."""
        takes: list[tuple[Take, str]] = []
        if requests_per_min is not None:
            takes.append((Take(f"{tenant_id}:req", float(requests_per_min), 1.0), "requests"))
        if tokens_per_min is not None:
            takes.append((Take(f"{tenant_id}:tok", float(tokens_per_min), float(tokens)),
                          "tokens"))
        if not takes:
            return
        refusal = self.store.take([t for t, _ in takes])
        if refusal is None:
            return
        what = takes[refusal.index][1]
        if refusal.wait_s == float("inf"):
            raise ApiError(
                429,
                f"This request needs more {what} than the per-minute quota allows.",
                "quota_exceeded",
                None,
                60.0,
            )
        raise ApiError(
            429, f"Rate limit reached for {what} per minute.", "rate_limit_exceeded", None,
            refusal.wait_s,
        )

    def refund(self, tenant_id: str, tokens_per_min: int | None, tokens: int) -> None:
        """Give back tokens charged up front but not consumed."""
        if tokens_per_min is not None and tokens > 0:
            self.store.give(Take(f"{tenant_id}:tok", float(tokens_per_min), float(tokens)))

    def forget(self, tenant_id: str) -> None:
        self.store.forget([f"{tenant_id}:req", f"{tenant_id}:tok"])
