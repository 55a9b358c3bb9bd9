"""The admin API over HTTP: tenants, keys, prompts, warm-up, cache view, audit."""

from __future__ import annotations

from tests.integration.conftest import Gateway
from tests.integration.test_openai_api import SYSTEM


def test_tenant_crud(gateway: Gateway) -> None:
    admin = gateway.admin
    r = admin.post("/admin/tenants", json={"name": "crud-t", "cache_policy": "user",
                                           "quotas": {"tokens_per_min": 5000}})
    assert r.status_code == 201
    tenant = r.json()
    assert {"id", "name", "cache_policy", "status", "quotas", "created_at"} <= set(tenant)
    assert tenant["quotas"]["tokens_per_min"] == 5000
    assert admin.post("/admin/tenants", json={"name": "crud-t"}).status_code == 409
    assert admin.post("/admin/tenants", json={"name": "bad name!"}).status_code == 422
    assert any(t["id"] == tenant["id"] for t in admin.get("/admin/tenants").json()["data"])
    r = admin.patch(f"/admin/tenants/{tenant['id']}", json={"cache_policy": "tenant"})
    assert r.json()["cache_policy"] == "tenant"
    assert admin.get(f"/admin/tenants/{tenant['id']}").json()["cache_policy"] == "tenant"
    assert admin.delete(f"/admin/tenants/{tenant['id']}").status_code == 200
    assert admin.get(f"/admin/tenants/{tenant['id']}").status_code == 404


def test_keys_issue_list_rotate_revoke(gateway: Gateway) -> None:
    tid, key = gateway.tenant("keys-t")
    keys = gateway.admin.get(f"/admin/tenants/{tid}/keys").json()["data"]
    assert len(keys) == 1 and "key" not in keys[0] and key.startswith(keys[0]["prefix"])
    r = gateway.admin.post(f"/admin/tenants/{tid}/keys/{keys[0]['id']}/rotate")
    assert r.status_code == 201
    new_key = r.json()["key"]
    assert gateway.client(new_key).models.list().data
    old = gateway.admin.get(f"/admin/tenants/{tid}/keys").json()["data"]
    assert sum(k["revoked_at"] is None for k in old) == 1


def test_prompt_versions_warm_and_retire(gateway: Gateway) -> None:
    tid, key = gateway.tenant("prompts-t")
    base = f"/admin/tenants/{tid}/prompts"
    r1 = gateway.admin.post(base, json={"name": "faq", "content": SYSTEM})
    r2 = gateway.admin.post(base, json={"name": "faq", "content": SYSTEM + " Version two."})
    assert (r1.json()["version"], r2.json()["version"]) == (1, 2)
    assert {"name", "version", "content_hash", "variables"} <= set(r2.json())
    warmed = gateway.admin.post(f"{base}/faq/warm")
    assert warmed.status_code == 200
    assert warmed.json()["version"] == 2 and warmed.json()["cached_tokens"] >= 48
    reply = gateway.client(key).chat.completions.create(
        model=gateway.model, messages=[{"role": "user", "content": "first question"}],
        max_tokens=1, extra_body={"prompt_variant": {"name": "faq"}},
    )
    assert reply.usage is not None and reply.usage.prompt_tokens_details is not None
    assert reply.usage.prompt_tokens_details.cached_tokens == warmed.json()["cached_tokens"]
    assert gateway.admin.delete(f"{base}/faq/versions/2").status_code == 200
    listed = gateway.admin.get(base).json()["data"]
    assert [(p["version"], p["retired_at"] is None) for p in listed] == [(1, True), (2, False)]


def test_cache_view_audit_and_tenant_delete_drop(gateway: Gateway) -> None:
    tid, key = gateway.tenant("view-t")
    gateway.admin.post(f"/admin/tenants/{tid}/prompts", json={"name": "v", "content": SYSTEM})
    client = gateway.client(key)
    ids = []
    for q in ("one", "two"):
        raw = client.chat.completions.with_raw_response.create(
            model=gateway.model, messages=[{"role": "user", "content": q}], max_tokens=1,
            extra_body={"prompt_variant": {"name": "v"}},
        )
        ids.append(raw.headers["x-request-id"])
    view = gateway.admin.get("/admin/cache").json()["data"]
    mine = [e for e in view if e["tenant_id"] == tid]
    assert mine and all(e["variant"] == "v@1" and e["blocks"] > 0 for e in mine)
    assert all(len(e["namespace"]) == 64 for e in view)
    records = gateway.admin.get("/admin/audit", params={"request_id": ids[1]}).json()["data"]
    assert len(records) == 1
    rec = records[0]
    assert rec["tenant_id"] == tid and rec["outcome"] == "ok" and rec["cached_tokens"] >= 48
    assert rec["reused_blocks"] == rec["cached_tokens"] // 16
    assert set(rec["reused_namespaces"]) <= {e["namespace"] for e in mine}
    assert len(gateway.admin.get("/admin/audit", params={"tenant_id": tid}).json()["data"]) == 2
    assert gateway.admin.delete(f"/admin/tenants/{tid}").status_code == 200
    after = gateway.admin.get("/admin/cache").json()["data"]
    assert not [e for e in after if e["tenant_id"] == tid]
    assert not {e["namespace"] for e in mine} & {e["namespace"] for e in after}
