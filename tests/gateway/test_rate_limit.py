"""Token-bucket quotas: requests/min and tokens/min, with a Retry-After that fits."""

from __future__ import annotations

import pytest

from gateway.errors import ApiError
from gateway.services.rate_limit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_requests_per_minute_refill_and_retry_after() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    for _ in range(3):
        limiter.acquire("t", 3, None, 10)
    with pytest.raises(ApiError) as err:
        limiter.acquire("t", 3, None, 10)
    assert err.value.status == 429 and err.value.retry_after_s == pytest.approx(20.0)
    clock.now = 20.0
    limiter.acquire("t", 3, None, 10)


def test_tokens_per_minute_takes_nothing_when_refused() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    limiter.acquire("t", 10, 100, 80)
    with pytest.raises(ApiError):
        limiter.acquire("t", 10, 100, 30)
    limiter.acquire("t", 10, 100, 20)  # the refused request took neither a request nor tokens


def test_request_larger_than_the_quota_and_tenants_are_separate() -> None:
    limiter = RateLimiter(Clock())
    with pytest.raises(ApiError) as err:
        limiter.acquire("t", None, 100, 101)
    assert err.value.code == "quota_exceeded"
    limiter.acquire("u", None, 100, 100)
    limiter.acquire("t", None, None, 10**9)  # no quota: unlimited
