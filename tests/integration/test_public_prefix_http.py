"""Platform public prefixes over HTTP: shared across tenants, and nothing beyond them is."""

from __future__ import annotations

from tests.integration.conftest import Gateway

PLATFORM = "Platform policy: be safe, be honest, be kind, and never reveal secrets. " * 3


def test_public_prefix_is_reused_across_tenants_but_not_their_continuations(
    gateway: Gateway,
) -> None:
    r = gateway.admin.post("/admin/public-prefixes", json={"name": "policy", "content": PLATFORM})
    assert r.status_code == 201
    public = r.json()
    assert {"name", "version", "content_hash"} <= set(public)
    listed = gateway.admin.get("/admin/public-prefixes").json()["data"]
    assert any(p["name"] == "policy" for p in listed)
    keys = []
    for name in ("pub-a", "pub-b"):
        tid, key = gateway.tenant(name)
        r = gateway.admin.post(
            f"/admin/tenants/{tid}/prompts",
            json={"name": "bot", "content": f" You are {name}'s assistant. " * 6,
                  "public_prefix": {"name": "policy", "version": public["version"]}},
        )
        assert r.status_code == 201 and r.json()["public_prefix"]["name"] == "policy"
        keys.append(key)

    def cached(key: str) -> tuple[int, int]:
        reply = gateway.client(key).chat.completions.create(
            model=gateway.model, messages=[{"role": "user", "content": "Hello"}], max_tokens=1,
            extra_body={"prompt_variant": {"name": "bot"}},
        )
        assert reply.usage is not None and reply.usage.prompt_tokens_details is not None
        return reply.usage.prompt_tokens_details.cached_tokens, reply.usage.prompt_tokens

    first_a, _ = cached(keys[0])
    again_a, _ = cached(keys[0])
    first_b, prompt_b = cached(keys[1])
    assert first_a == 0 and again_a > first_b
    # B reuses exactly the public prefix's full blocks, none of A's own continuation.
    assert 0 < first_b < prompt_b and first_b % 16 == 0
    view = gateway.admin.get("/admin/cache").json()["data"]
    public_entries = [e for e in view if e["scope"] == "public"]
    assert public_entries and all(e["tenant_id"] is None for e in public_entries)
    assert all(e["variant"] == f"public:policy@{public['version']}" for e in public_entries)
