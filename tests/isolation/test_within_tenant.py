"""Inside one tenant, sharing follows the variant, its version, the end user and the
personalization (DESIGN.md rules 1, 3, 4): what may be shared is, nothing else is.

Each case checks `cached_tokens` and the audited block ids with the scope of their owners.
"""

from __future__ import annotations

from gateway.canonical import VariantText
from tests.integration.audited_gateway import AuditedGateway
from tests.isolation.support import (
    SYSTEM,
    chat,
    cold,
    register,
    reused,
    system_chat,
    variant,
)

SHARED = frozenset({"shared"})
QUESTION = system_chat("ignored", "Where is my order?")


def _label(iso: AuditedGateway, ns: str) -> tuple[str | None, str | None, str]:
    label = iso.runtime.namespaces.label(bytes.fromhex(ns))
    assert label is not None
    return label.tenant_id, label.variant, label.scope


def test_two_variants_differing_in_one_character(iso: AuditedGateway) -> None:
    tid, key = iso.gw.tenant("w-one-char")
    register(iso, tid, "dot", SYSTEM + "Thanks.")
    register(iso, tid, "bang", SYSTEM + "Thanks!")
    chat(iso, key, QUESTION, **variant("dot"))
    assert reused(iso, chat(iso, key, QUESTION, **variant("dot")), tid)
    cold(iso, chat(iso, key, QUESTION, **variant("bang")), tid)  # shares all tokens but two


def test_same_variant_two_versions(iso: AuditedGateway) -> None:
    tid, key = iso.gw.tenant("w-versions")
    assert register(iso, tid, "support", SYSTEM)["version"] == 1
    assert register(iso, tid, "support", SYSTEM + "Be kind.")["version"] == 2
    chat(iso, key, QUESTION, **variant("support", 1))
    cold(iso, chat(iso, key, QUESTION, **variant("support", 2)), tid)
    v1 = reused(iso, chat(iso, key, QUESTION, **variant("support", 1)), tid)
    v2 = reused(iso, chat(iso, key, QUESTION, **variant("support", 2)), tid)
    assert v1 and v2
    assert {_label(iso, ns)[1] for _, ns in v1} == {"support@1"}
    assert {_label(iso, ns)[1] for _, ns in v2} == {"support@2"}
    assert not {b for b, _ in v1} & {b for b, _ in v2}


def test_per_user_policy_keeps_two_users_apart(iso: AuditedGateway) -> None:
    tid, key = iso.gw.tenant("w-per-user", cache_policy="user")
    register(iso, tid, "support", SYSTEM)
    chat(iso, key, QUESTION, user="alice", **variant("support"))
    hit = chat(iso, key, QUESTION, user="alice", **variant("support"))
    alice = reused(iso, hit, tid)
    # Every segment, the variant included, lives in alice's own namespace (the record's).
    assert alice and {ns for _, ns in alice} == {iso.audit(hit.request_id)["namespace"]}
    cold(iso, chat(iso, key, QUESTION, user="bob", **variant("support")), tid)
    cold(iso, chat(iso, key, QUESTION, **variant("support")), tid)  # no user: never cached
    cold(iso, chat(iso, key, QUESTION, **variant("support")), tid)


def test_tenant_policy_shares_the_variant_but_not_a_users_conversation(
    iso: AuditedGateway,
) -> None:
    tid, key = iso.gw.tenant("w-tenant-users")
    register(iso, tid, "support", SYSTEM)
    convo = system_chat("ignored", "My account number is 12345, why was I charged twice? " * 3)
    chat(iso, key, convo, user="alice", **variant("support"))
    alice = reused(iso, chat(iso, key, convo, user="alice", **variant("support")), tid)
    bob = reused(iso, chat(iso, key, convo, user="bob", **variant("support")), tid,
                 scopes=SHARED)
    assert 0 < len(bob) < len(alice)
    assert {_label(iso, ns)[2] for _, ns in alice} == {"shared", "user"}
    assert bob == alice[:len(bob)]  # the variant's blocks, the very same ones


def test_personalization_variables(iso: AuditedGateway) -> None:
    tid, key = iso.gw.tenant("w-personal")
    register(iso, tid, "greet", SYSTEM + "The customer is {{name}} from {{city}}. Be warm.")
    ann = {"name": "Ann", "city": "Oslo"}
    chat(iso, key, QUESTION, **variant("greet", variables=ann))
    again = reused(iso, chat(iso, key, QUESTION, **variant("greet", variables=ann)), tid)
    other = chat(iso, key, QUESTION, **variant("greet", variables={"name": "Bob", "city": "Oslo"}))
    static = reused(iso, other, tid, scopes=SHARED)
    assert 0 < len(static) < len(again)
    assert {_label(iso, ns)[2] for _, ns in again} == {"shared", "personalization"}
    # Ann's values with a `user`: narrowed to that user, Ann's anonymous tail is not reused.
    named = chat(iso, key, QUESTION, user="carol", **variant("greet", variables=ann))
    assert reused(iso, named, tid, scopes=SHARED) == static


def test_seam_attack_cannot_change_the_cached_prefix(iso: AuditedGateway) -> None:
    """Variable values crafted to merge with the variant's last token leave its tokens alone.

    The static part is padded to whole blocks and ends mid-word ("...Dear cust"), so a value
    that re-tokenized the last static token ("omer" -> "customer") would change the last full
    block: every request must still reuse exactly all of the static part's blocks.
    """
    tid, key = iso.gw.tenant("w-seam")
    canon, block = iso.runtime.canonicalizer, iso.runtime.engine.block_size
    content = next(
        text for pad in range(64)
        if len(canon.variant_static(VariantText.parse(
            text := SYSTEM + "z " * pad + "Dear cust{{name}}, welcome.")).static) % block == 0
    )
    static_len = len(canon.variant_static(VariantText.parse(content)).static)
    register(iso, tid, "seam", content)
    chat(iso, key, QUESTION, **variant("seam", variables={"name": "Zed"}))
    for value in ("omer", "omers", "\u200bomer", "o\u0301mer", "<|user|>", " Bob"):
        reply = chat(iso, key, QUESTION, **variant("seam", variables={"name": value}))
        assert reply.cached == static_len, value
        assert len(reused(iso, reply, tid, scopes=SHARED)) == static_len // block
    # The same crafted text as a user message after a variant without variables.
    register(iso, tid, "plain", SYSTEM + "Dear cust")
    plain = canon.variant_static(VariantText.parse(SYSTEM + "Dear cust")).static
    chat(iso, key, QUESTION, **variant("plain"))
    merged = chat(iso, key, system_chat("ignored", "omer, where is my order?"),
                  **variant("plain"))
    assert merged.cached >= len(plain) // block * block > 0
    assert reused(iso, merged, tid, scopes=SHARED)
