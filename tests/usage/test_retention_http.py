"""Per-tenant cache retention and no-store, end to end through the gateway and the engine."""

from __future__ import annotations

import time

from tests.usage.conftest import UsageGateway

PROMPT = "Answer briefly and politely, citing sources where you can. " * 4


def _cached(gw: UsageGateway, key: str, text: str) -> int:
    chat = gw.gw.client(key).chat.completions.create(
        model=gw.gw.model, messages=[{"role": "user", "content": text}], max_tokens=2,
        extra_body={"prompt_variant": {"name": "p"}},
    )
    assert chat.usage is not None and chat.usage.prompt_tokens_details is not None
    return chat.usage.prompt_tokens_details.cached_tokens or 0


def _tenant_with_prompt(gw: UsageGateway, name: str) -> tuple[str, str]:
    tid, key = gw.gw.tenant(name)
    r = gw.gw.admin.post(f"/admin/tenants/{tid}/prompts", json={"name": "p", "content": PROMPT})
    assert r.status_code == 201, r.text
    return tid, key


def test_no_store_tenant_never_appears_in_the_cache(usage_gateway: UsageGateway) -> None:
    admin = usage_gateway.gw.admin
    tid, key = _tenant_with_prompt(usage_gateway, "no-store")
    r = admin.put(f"/admin/tenants/{tid}/usage-policy", json={"no_store": True})
    assert r.status_code == 200 and r.json()["no_store"] is True
    warmed = admin.post(f"/admin/tenants/{tid}/prompts/p/warm")  # an admin warm stores nothing
    assert warmed.status_code in (200, 201), warmed.text
    assert warmed.json()["cached_tokens"] == 0
    assert all(e["tenant_id"] != tid for e in admin.get("/admin/cache").json()["data"])
    for i in range(3):
        assert _cached(usage_gateway, key, f"question {i}") == 0
    entries = admin.get("/admin/cache").json()["data"]
    assert all(e["tenant_id"] != tid for e in entries)
    other, other_key = _tenant_with_prompt(usage_gateway, "stores")
    _cached(usage_gateway, other_key, "warm")
    assert _cached(usage_gateway, other_key, "again") > 0
    entries = admin.get("/admin/cache").json()["data"]
    assert any(e["tenant_id"] == other for e in entries)
    assert all(e["tenant_id"] != tid for e in entries)


def test_switching_to_no_store_drops_what_was_cached(usage_gateway: UsageGateway) -> None:
    admin = usage_gateway.gw.admin
    tid, key = _tenant_with_prompt(usage_gateway, "late-no-store")
    _cached(usage_gateway, key, "one")
    assert _cached(usage_gateway, key, "two") > 0
    assert admin.put(f"/admin/tenants/{tid}/usage-policy", json={"no_store": True}).is_success
    assert _cached(usage_gateway, key, "three") == 0
    assert all(e["tenant_id"] != tid for e in admin.get("/admin/cache").json()["data"])


def test_expired_prefix_is_no_longer_matched(usage_gateway: UsageGateway) -> None:
    admin = usage_gateway.gw.admin
    tid, key = _tenant_with_prompt(usage_gateway, "short-ttl")
    r = admin.put(f"/admin/tenants/{tid}/usage-policy", json={"cache_retention_s": 1})
    assert r.status_code == 200 and r.json()["cache_retention_s"] == 1
    _cached(usage_gateway, key, "first")
    assert _cached(usage_gateway, key, "second") > 0
    time.sleep(1.6)
    assert _cached(usage_gateway, key, "third") == 0
    r = admin.put(f"/admin/tenants/{tid}/usage-policy", json={"cache_retention_s": 86401})
    assert r.status_code == 422
    assert admin.get(f"/admin/tenants/{tid}/usage-policy").json()["cache_retention_s"] == 1
