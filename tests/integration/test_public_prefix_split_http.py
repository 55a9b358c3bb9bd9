"""Public vs own cached tokens over HTTP: usage extension and audit view agree, and a tenant
never reuses another tenant's variant blocks, even when both variants are byte-identical."""

from __future__ import annotations

from typing import Any

from tests.integration.conftest import Gateway

PLATFORM = "Shared platform rules: cite sources, refuse harm, keep answers short and clear. " * 3
VARIANT = " You are a helpful assistant for the billing desk of a small shop. " * 6


def test_public_and_own_cached_tokens_are_split(gateway: Gateway) -> None:
    r = gateway.admin.post("/admin/public-prefixes", json={"name": "split", "content": PLATFORM})
    assert r.status_code == 201
    version = r.json()["version"]
    tenants = []
    for name in ("split-a", "split-b"):
        tid, key = gateway.tenant(name)
        r = gateway.admin.post(
            f"/admin/tenants/{tid}/prompts",  # byte-identical variants in both tenants
            json={"name": "desk", "content": VARIANT,
                  "public_prefix": {"name": "split", "version": version}},
        )
        assert r.status_code == 201
        tenants.append((tid, key))

    def call(key: str) -> dict[str, Any]:
        raw = gateway.client(key).chat.completions.with_raw_response.create(
            model=gateway.model, messages=[{"role": "user", "content": "Hi"}], max_tokens=1,
            extra_body={"prompt_variant": {"name": "desk"}},
        )
        usage: dict[str, Any] = raw.http_response.json()["usage"]
        usage["request_id"] = raw.headers["x-request-id"]
        return usage

    (tid_a, key_a), (tid_b, key_b) = tenants
    first_a, again_a, first_b = call(key_a), call(key_a), call(key_b)
    details = [u["prompt_tokens_details"] for u in (first_a, again_a, first_b)]
    assert details[0] == {"cached_tokens": 0, "public_cached_tokens": 0}
    public = details[2]["public_cached_tokens"]
    # B reuses exactly A's public blocks (block-aligned) and nothing of A's identical variant.
    assert public > 0 and public % 16 == 0
    assert details[2]["cached_tokens"] == public < first_b["prompt_tokens"]
    # A's repeat reuses the same public blocks plus its own variant's.
    assert details[1]["public_cached_tokens"] == public < details[1]["cached_tokens"]

    for usage, tid in ((again_a, tid_a), (first_b, tid_b)):
        records = gateway.admin.get(
            "/admin/audit", params={"request_id": usage["request_id"]}
        ).json()["data"]
        assert len(records) == 1 and records[0]["tenant_id"] == tid
        record = records[0]
        assert record["cached_tokens"] == usage["prompt_tokens_details"]["cached_tokens"]
        assert record["public_cached_tokens"] == public


def test_opted_out_tenant_neither_reuses_nor_contributes_public_blocks(gateway: Gateway) -> None:
    r = gateway.admin.post("/admin/public-prefixes", json={"name": "optout", "content": PLATFORM})
    version = r.json()["version"]
    keys = {}
    for name, sharing in (("share-a", True), ("optout-b", False), ("share-c", True)):
        tid, key = gateway.tenant(name, quotas={"public_prefix_sharing": sharing})
        tenant = gateway.admin.get(f"/admin/tenants/{tid}").json()
        assert tenant["quotas"]["public_prefix_sharing"] is sharing
        r = gateway.admin.post(
            f"/admin/tenants/{tid}/prompts",
            json={"name": "desk", "content": f" You are {name}'s desk assistant. " * 6,
                  "public_prefix": {"name": "optout", "version": version}},
        )
        assert r.status_code == 201
        keys[name] = key

    def details(key: str) -> dict[str, int]:
        raw = gateway.client(key).chat.completions.with_raw_response.create(
            model=gateway.model, messages=[{"role": "user", "content": "Hi"}], max_tokens=1,
            extra_body={"prompt_variant": {"name": "desk"}},
        )
        out: dict[str, int] = raw.http_response.json()["usage"]["prompt_tokens_details"]
        return out

    # B opted out first: computes the public text in its own namespace, shares nothing.
    assert details(keys["optout-b"]) == {"cached_tokens": 0, "public_cached_tokens": 0}
    # C shares: B's blocks are not public ones, so C's first call is cold.
    assert details(keys["share-c"]) == {"cached_tokens": 0, "public_cached_tokens": 0}
    # A shares and reuses what C contributed; B never reuses A's or C's public blocks ...
    shared = details(keys["share-a"])
    assert shared["cached_tokens"] == shared["public_cached_tokens"] > 0
    again_b = details(keys["optout-b"])
    assert again_b["public_cached_tokens"] == 0
    # ... but its own copy of the public text (and its variant) is reused, beyond the public part.
    assert again_b["cached_tokens"] > shared["public_cached_tokens"]
