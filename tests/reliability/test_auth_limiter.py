"""AuthFailureLimiter on its own: sliding window, Retry-After, bounded memory."""

from __future__ import annotations

import pytest

from gateway.auth import AuthFailureLimiter
from gateway.errors import ApiError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_blocks_after_max_failures_until_the_oldest_leaves_the_window() -> None:
    clock = Clock()
    limiter = AuthFailureLimiter(max_failures=3, window_s=60.0, clock=clock)
    for at in (1000.0, 1010.0, 1030.0):
        clock.now = at
        limiter.check("10.0.0.1")
        limiter.record_failure("10.0.0.1")
    clock.now = 1050.0
    with pytest.raises(ApiError) as blocked:
        limiter.check("10.0.0.1")
    assert blocked.value.status == 429 and blocked.value.code == "too_many_auth_failures"
    assert blocked.value.retry_after_s == 10.0  # the failure at t=1000 leaves at t=1060
    limiter.check("10.0.0.2")  # other sources are unaffected
    clock.now = 1060.5
    limiter.check("10.0.0.1")  # one slot free again
    limiter.record_failure("10.0.0.1")
    with pytest.raises(ApiError) as again:
        limiter.check("10.0.0.1")
    assert again.value.retry_after_s == 10.0  # until t=1070 (the failure at 1010 expires)


def test_memory_is_bounded_by_max_sources() -> None:
    clock = Clock()
    limiter = AuthFailureLimiter(max_failures=2, window_s=1.0, max_sources=100, clock=clock)
    for i in range(1000):
        limiter.record_failure(f"10.1.{i // 256}.{i % 256}")
        clock.now += 0.01
    assert len(limiter._failures) <= 100

