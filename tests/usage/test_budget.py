"""Budgets: reservations are atomic (100 concurrent requests, room for 10), settle moves the
hold to `used`, and the gateway answers 429 naming the budget."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import httpx
import pytest

from tenants.budget import BudgetExceeded, BudgetService
from tenants.database import Database
from tenants.migrate import upgrade
from tenants.tenant_service import TenantService
from tests.tenants.db_urls import BACKENDS, empty_database
from tests.usage.conftest import UsageGateway

PER_REQUEST = 100


@pytest.mark.parametrize("backend", BACKENDS)
def test_hundred_concurrent_reservations_admit_exactly_ten(backend: str, tmp_path: Path) -> None:
    with empty_database(backend, tmp_path) as url:
        upgrade(url)
        db = Database.from_url(url)
        try:
            tenant = TenantService(db).create("budgeted")
            budgets = BudgetService(db)
            budgets.set(tenant.id, "day", 10 * PER_REQUEST)
            admitted, refused = [], []
            gate = threading.Barrier(100)

            def one() -> None:
                gate.wait()
                try:
                    admitted.append(budgets.reserve(tenant.id, None, PER_REQUEST))
                except BudgetExceeded as exc:
                    refused.append(str(exc))

            threads = [threading.Thread(target=one) for _ in range(100)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert len(admitted) == 10 and len(refused) == 90
            assert "daily token budget of the tenant (1000 tokens)" in refused[0]
            (status,) = budgets.status(tenant.id)
            assert (status.reserved, status.used) == (10 * PER_REQUEST, 0)
            for reservation in admitted:
                assert reservation is not None
                budgets.settle(reservation, PER_REQUEST // 2)
            (status,) = budgets.status(tenant.id)
            assert (status.reserved, status.used) == (0, 5 * PER_REQUEST)
            for _ in range(10):  # what was not consumed is free again
                budgets.reserve(tenant.id, None, PER_REQUEST // 2)
            with pytest.raises(BudgetExceeded):
                budgets.reserve(tenant.id, None, 1)
        finally:
            db.dispose()


def test_key_and_tenant_budgets_both_hold(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'b.db'}"
    upgrade(url)
    db = Database.from_url(url)
    tenant = TenantService(db).create("two-budgets")
    budgets = BudgetService(db)
    budgets.set(tenant.id, "month", 1000)
    budgets.set(tenant.id, "day", 300, key_id="key_a")
    assert budgets.reserve(tenant.id, "key_b", 50) is not None  # only the tenant's month budget
    held = budgets.reserve(tenant.id, "key_a", 300)
    assert held is not None and len(held.holds) == 2
    with pytest.raises(BudgetExceeded, match="key key_a"):
        budgets.reserve(tenant.id, "key_a", 1)
    month = next(s for s in budgets.status(tenant.id) if s.budget.period == "month")
    assert month.reserved == 350  # the refused request held nothing anywhere
    budgets.set(tenant.id, "day", None, key_id="key_a")
    assert [b.period for b in budgets.list(tenant.id)] == ["month"]
    db.dispose()


def test_gateway_enforces_budget_under_concurrency(usage_gateway: UsageGateway) -> None:
    gw = usage_gateway.gw
    tid, key = gw.tenant("budget-http")
    body = {"model": gw.model, "prompt": "count with me " * 4, "max_tokens": 4}
    probe = gw.client(key).completions.create(model=gw.model, prompt=body["prompt"],
                                              max_tokens=4)
    assert probe.usage is not None
    worth = probe.usage.prompt_tokens + 4  # what admission reserves per request
    r = gw.admin.put(f"/admin/tenants/{tid}/budgets", json={"period": "day", "tokens": 10 * worth})
    assert r.status_code == 200, r.text
    # The probe ran before the budget existed, so the counter starts at zero.

    async def burst() -> list[httpx.Response]:
        headers = {"authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=gw.base_url, headers=headers,
                                     timeout=60) as client:
            return await asyncio.gather(*(client.post("/v1/completions", json=body)
                                          for _ in range(100)))

    responses = asyncio.run(burst())
    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert len(ok) + len(refused) == 100
    assert refused and all(r.json()["error"]["code"] == "budget_exceeded" for r in refused)
    assert "daily token budget of the tenant" in refused[0].json()["error"]["message"]
    (status,) = gw.admin.get(f"/admin/tenants/{tid}/budgets").json()["data"]
    used = sum(r.json()["usage"]["total_tokens"] for r in ok)
    assert status["reserved"] == 0 and status["used"] == used <= 10 * worth
    # Exactly what fits: 10 when every request consumed its whole reservation; a request that
    # stopped early (EOS) returned the rest, which admitted others in its place.
    assert len(ok) >= 10
    if used == len(ok) * worth:
        assert len(ok) == 10
