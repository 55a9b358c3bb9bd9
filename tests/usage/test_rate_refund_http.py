"""Tokens/min is charged prompt + max_tokens up front; what a request did not consume (all of
it, when a budget refused the request) is given back."""

from __future__ import annotations

import math
import time

import httpx

from tests.usage.conftest import UsageGateway


def _post(gw: UsageGateway, key: str, max_tokens: int) -> httpx.Response:
    return httpx.post(gw.gw.base_url + "/v1/completions", timeout=60,
                      headers={"authorization": f"Bearer {key}"},
                      json={"model": gw.gw.model, "prompt": "one two three",
                            "max_tokens": max_tokens})


def test_budget_refusals_give_their_tokens_back(usage_gateway: UsageGateway) -> None:
    tid, key = usage_gateway.gw.tenant("tpm-refund", quotas={"tokens_per_min": 200})
    r = usage_gateway.gw.admin.put(f"/admin/tenants/{tid}/budgets",
                                   json={"period": "day", "tokens": 50})
    assert r.status_code == 200
    for _ in range(4):  # 4 x ~130 tokens charged, far beyond 200/min, were all refunded
        refused = _post(usage_gateway, key, 120)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "budget_exceeded"
    r = usage_gateway.gw.admin.put(f"/admin/tenants/{tid}/budgets",
                                   json={"period": "day", "tokens": None})
    assert r.status_code == 200 and r.json()["data"] == []
    started = time.monotonic()
    done = _post(usage_gateway, key, 120)
    assert done.status_code == 200, done.text
    consumed = done.json()["usage"]["total_tokens"]
    # Left: 200 - consumed (the unused max_tokens came back) plus the refill since the charge
    # (200/60 a second); a request charging that fits, a few tokens more do not.
    prompt = done.json()["usage"]["prompt_tokens"]
    refill = math.ceil(200 / 60 * (time.monotonic() - started + 0.5))
    over = _post(usage_gateway, key, 200 - consumed - prompt + refill + 2)
    assert over.status_code == 429 and over.json()["error"]["code"] == "rate_limit_exceeded"
    fits = _post(usage_gateway, key, 200 - consumed - prompt)
    assert fits.status_code == 200, fits.text
