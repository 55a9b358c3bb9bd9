"""Two tenants never share cached blocks, whatever the one sends to reach the other's prompt.

Each probe checks the reply (`cached_tokens`) and the audit trail (the reused block ids and
their owners: none of another tenant's namespaces), DESIGN.md rules 1, 2, 5 and 6.
"""

from __future__ import annotations

import unicodedata

from gateway.canonical import VariantText
from tests.integration.audited_gateway import AuditedGateway
from tests.isolation.support import (
    SYSTEM,
    chat,
    cold,
    complete,
    register,
    reused,
    system_chat,
    variant,
)

NFD_SYSTEM = "Répondez en français, café crème, naïve façade. " + SYSTEM


def test_identical_variants_of_two_tenants(iso: AuditedGateway) -> None:
    a, key_a = iso.gw.tenant("x-variant-a")
    b, key_b = iso.gw.tenant("x-variant-b")
    hashes = {register(iso, t, "support", SYSTEM)["content_hash"] for t in (a, b)}
    assert len(hashes) == 1  # byte-identical content
    chat(iso, key_a, system_chat("ignored"), **variant("support"))
    hit = chat(iso, key_a, system_chat("ignored"), **variant("support"))
    assert hit.cached > 0 and reused(iso, hit, a)
    cold(iso, chat(iso, key_b, system_chat("ignored"), **variant("support")), b)
    again = chat(iso, key_b, system_chat("ignored"), **variant("support"))
    assert again.cached > 0
    assert not {ns for _, ns in reused(iso, again, b)} & {ns for _, ns in reused(iso, hit, a)}


def test_identical_ad_hoc_system_prompts(iso: AuditedGateway) -> None:
    a, key_a = iso.gw.tenant("x-adhoc-a")
    b, key_b = iso.gw.tenant("x-adhoc-b")
    chat(iso, key_a, system_chat(SYSTEM))
    assert reused(iso, chat(iso, key_a, system_chat(SYSTEM)), a)
    cold(iso, chat(iso, key_b, system_chat(SYSTEM)), b)


def test_raw_completion_equal_to_another_tenants_variant(iso: AuditedGateway) -> None:
    """B sends A's variant as a raw prompt: its content, and its full rendered text."""
    a, key_a = iso.gw.tenant("x-raw-a")
    b, key_b = iso.gw.tenant("x-raw-b")
    register(iso, a, "support", SYSTEM)
    chat(iso, key_a, system_chat("x"), **variant("support"))
    assert reused(iso, chat(iso, key_a, system_chat("x"), **variant("support")), a)
    content = iso.runtime.prompts.resolve(a, "support").content
    static = iso.runtime.canonicalizer.variant_static(VariantText.parse(content)).static
    rendered = iso.runtime.engine.tokenizer.decode(list(static), skip_special_tokens=False)
    assert SYSTEM.strip() in rendered
    for i, prompt in enumerate((SYSTEM, rendered, rendered + " What is the warranty?")):
        cold(iso, complete(iso, key_b, prompt, user=f"probe-{i}"), b)  # fresh namespace each
    complete(iso, key_b, rendered)  # B's ad-hoc namespace: B's own blocks serve B
    assert reused(iso, complete(iso, key_b, rendered), b)


def test_unicode_and_zero_width_variants_of_another_tenants_prompt(iso: AuditedGateway) -> None:
    a, key_a = iso.gw.tenant("x-unicode-a")
    b, key_b = iso.gw.tenant("x-unicode-b")
    chat(iso, key_a, system_chat(NFD_SYSTEM))
    nfd = unicodedata.normalize("NFD", NFD_SYSTEM)
    assert nfd != NFD_SYSTEM
    own = chat(iso, key_a, system_chat(nfd))  # NFC-normalized: A's own cache serves it
    assert own.cached > 0 and reused(iso, own, a)
    for i, probe in enumerate((nfd, NFD_SYSTEM, NFD_SYSTEM.replace(" ", " \u200b"),
                               "\u200b" + NFD_SYSTEM, NFD_SYSTEM.replace("e", "\u200de"))):
        cold(iso, chat(iso, key_b, system_chat(probe), user=f"probe-{i}"), b)


def test_deleted_tenants_namespace_is_not_matched_by_a_new_tenant_of_that_name(
    iso: AuditedGateway,
) -> None:
    old, key_old = iso.gw.tenant("x-reborn")
    register(iso, old, "support", SYSTEM)
    chat(iso, key_old, system_chat(SYSTEM))
    chat(iso, key_old, system_chat("x"), **variant("support"))
    kept = reused(iso, chat(iso, key_old, system_chat(SYSTEM)), old)
    assert kept
    assert iso.gw.admin.delete(f"/admin/tenants/{old}").status_code == 200
    assert complete(iso, key_old, SYSTEM).status == 401
    new, key_new = iso.gw.tenant("x-reborn")
    assert new != old
    register(iso, new, "support", SYSTEM)
    first = chat(iso, key_new, system_chat(SYSTEM))
    cold(iso, first, new)
    cold(iso, chat(iso, key_new, system_chat("x"), **variant("support")), new)
    dropped = {ns for _, ns in kept}
    assert all(iso.runtime.namespaces.label(bytes.fromhex(ns)) is None for ns in dropped)
    assert not dropped & {ns.hex() for ns in iso.runtime.namespaces.of_tenant(new)}


def test_revoked_key_gets_nothing_and_other_keys_keep_the_tenant_cache(
    iso: AuditedGateway,
) -> None:
    tid, key = iso.gw.tenant("x-revoked")
    r = iso.gw.admin.post(f"/admin/tenants/{tid}/keys", json={"name": "second"})
    second = r.json()["key"]
    first_id = iso.gw.admin.get(f"/admin/tenants/{tid}/keys").json()["data"][0]["id"]
    chat(iso, key, system_chat(SYSTEM))
    assert iso.gw.admin.delete(f"/admin/tenants/{tid}/keys/{first_id}").status_code == 200
    refused = chat(iso, key, system_chat(SYSTEM))
    assert refused.status == 401 and "usage" not in refused.body
    assert refused.body["error"]["code"] == "revoked_api_key"
    records = iso.gw.admin.get("/admin/audit", params={"request_id": refused.request_id})
    assert records.json()["data"] == []  # refused before authentication: no tenant to audit
    assert reused(iso, chat(iso, second, system_chat(SYSTEM)), tid)


def test_public_prefix_is_shared_and_nothing_after_it(iso: AuditedGateway) -> None:
    a, key_a = iso.gw.tenant("x-public-a")
    b, key_b = iso.gw.tenant("x-public-b")
    r = iso.gw.admin.post("/admin/public-prefixes",
                          json={"name": "x-safety", "content": "Platform safety rules. " * 6})
    assert r.status_code == 201, r.text
    public = (r.json()["name"], r.json()["version"])
    for tenant in (a, b):
        register(iso, tenant, "support", SYSTEM, public)
    chat(iso, key_a, system_chat("x"), **variant("support"))
    full = chat(iso, key_a, system_chat("x"), **variant("support"))
    probe = chat(iso, key_b, system_chat("x"), **variant("support"))
    assert 0 < probe.cached < full.cached
    shared = reused(iso, probe, b, scopes=frozenset(), public_ok=True)  # public blocks only
    assert shared == reused(iso, full, a, public_ok=True)[:len(shared)]
