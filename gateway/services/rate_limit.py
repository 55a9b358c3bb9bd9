"""Per-tenant request and token quotas (requests/min, tokens/min) as token buckets.

A bucket holds up to one minute's allowance and refills continuously; a request that finds
too little in either bucket is refused with 429 and a Retry-After of when it would fit.
In-memory and per process: with several gateway replicas each enforces its own share.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.errors import ApiError


@dataclass(slots=True)
class _Bucket:
    capacity: float
    level: float
    stamp: float

    def refill(self, now: float) -> None:
        rate = self.capacity / 60.0
        self.level = min(self.capacity, self.level + (now - self.stamp) * rate)
        self.stamp = now

    def wait_for(self, amount: float) -> float:
        """Seconds until `amount` fits (0 if it fits now)."""
        if amount <= self.level:
            return 0.0
        if amount > self.capacity:
            return float("inf")
        return (amount - self.level) * 60.0 / self.capacity


class RateLimiter:
    """Token buckets per (tenant, kind); the capacity follows the tenant's current quota."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    def _bucket(self, tenant_id: str, kind: str, capacity: int, now: float) -> _Bucket:
        bucket = self._buckets.get((tenant_id, kind))
        if bucket is None or bucket.capacity != capacity:
            bucket = _Bucket(float(capacity), float(capacity), now)
            self._buckets[(tenant_id, kind)] = bucket
        bucket.refill(now)
        return bucket

    def acquire(
        self,
        tenant_id: str,
        requests_per_min: int | None,
        tokens_per_min: int | None,
        tokens: int,
    ) -> None:
        """Take one request and `tokens` tokens, or raise ApiError(429) taking nothing."""
        now = self._clock()
        wanted: list[tuple[_Bucket, float, str]] = []
        if requests_per_min is not None:
            wanted.append((self._bucket(tenant_id, "req", requests_per_min, now), 1.0, "requests"))
        if tokens_per_min is not None:
            bucket = self._bucket(tenant_id, "tok", tokens_per_min, now)
            wanted.append((bucket, float(tokens), "tokens"))
        for bucket, amount, what in wanted:
            wait = bucket.wait_for(amount)
            if wait == float("inf"):
                raise ApiError(
                    429,
                    f"This request needs more {what} than the per-minute quota allows.",
                    "quota_exceeded",
                    None,
                    60.0,
                )
            if wait > 0:
                raise ApiError(
                    429, f"Rate limit reached for {what} per minute.", "rate_limit_exceeded",
                    None, wait,
                )
        for bucket, amount, _ in wanted:
            bucket.level -= amount

    def forget(self, tenant_id: str) -> None:
        for kind in ("req", "tok"):
            self._buckets.pop((tenant_id, kind), None)
