"""Namespace derivation: length-prefixed, per tenant, and never wider than personalization."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.namespaces import (
    DOMAIN_TAG,
    EndUser,
    ModelIdentity,
    PublicRef,
    VariantRef,
    derive,
    derive_public,
    hash_fields,
    personalization_user,
    segment_namespaces,
)

MODEL = ModelIdentity("tiny", "w1", "float32")
VARIANT = VariantRef("support", 1, "ab" * 32)


def test_length_prefixing_keeps_field_boundaries() -> None:
    assert hash_fields(DOMAIN_TAG, ["org_1", "2345"]) != hash_fields(DOMAIN_TAG, ["org_12345", ""])
    a = derive("org_1", ModelIdentity("2345", "w", "f"), None, None)
    b = derive("org_12345", ModelIdentity("", "w", "f"), None, None)
    assert a != b


def test_every_identity_field_changes_the_namespace() -> None:
    base = derive("t1", MODEL, VARIANT, None)
    others = [
        derive("t2", MODEL, VARIANT, None),
        derive("t1", ModelIdentity("tiny2", "w1", "float32"), VARIANT, None),
        derive("t1", ModelIdentity("tiny", "w2", "float32"), VARIANT, None),
        derive("t1", ModelIdentity("tiny", "w1", "bfloat16"), VARIANT, None),
        derive("t1", MODEL, VariantRef("support", 2, VARIANT.content_hash), None),
        derive("t1", MODEL, VariantRef("support", 1, "cd" * 32), None),
        derive("t1", MODEL, None, None),
        derive("t1", MODEL, VARIANT, EndUser("user", "alice")),
    ]
    assert len({base, *others}) == len(others) + 1


def test_two_tenants_with_identical_variants_never_share() -> None:
    a = segment_namespaces("tenant", "ten_a", MODEL, VARIANT, None, None)
    b = segment_namespaces("tenant", "ten_b", MODEL, VARIANT, None, None)
    assert {a.static, a.private}.isdisjoint({b.static, b.private})


def test_tenant_policy_shares_the_static_part_and_narrows_the_private_part() -> None:
    anon = segment_namespaces("tenant", "t", MODEL, VARIANT, None, None)
    alice = segment_namespaces("tenant", "t", MODEL, VARIANT, "alice", None)
    bob = segment_namespaces("tenant", "t", MODEL, VARIANT, "bob", None)
    assert anon.static == anon.private == alice.static == bob.static
    assert len({anon.private, alice.private, bob.private}) == 3


def test_user_policy_needs_a_user_and_off_caches_nothing() -> None:
    assert segment_namespaces("user", "t", MODEL, VARIANT, None, None).private is None
    alice = segment_namespaces("user", "t", MODEL, VARIANT, "alice", None)
    assert alice.static == alice.private == derive("t", MODEL, VARIANT, EndUser("user", "alice"))
    off = segment_namespaces("off", "t", MODEL, VARIANT, "alice", {"x": "1"})
    assert off.static is None and off.private is None


@given(
    policy=st.sampled_from(["tenant", "user", "off"]),
    user=st.one_of(st.none(), st.text(max_size=8)),
    values=st.dictionaries(st.sampled_from(["name", "plan"]), st.text(max_size=8), min_size=1),
    other_values=st.dictionaries(st.sampled_from(["name", "plan"]), st.text(max_size=8),
                                 min_size=1),
)
def test_personalization_never_lands_in_a_wider_namespace(
    policy: str, user: str | None, values: dict[str, str], other_values: dict[str, str]
) -> None:
    ns = segment_namespaces(policy, "t", MODEL, VARIANT, user, values)
    if ns.private is None:
        return
    end_user = EndUser("user", user) if user is not None else personalization_user(values)
    assert ns.private == derive("t", MODEL, VARIANT, end_user)
    shared = derive("t", MODEL, VARIANT, None)
    assert ns.private != shared
    if user is None and other_values != values:
        other = segment_namespaces(policy, "t", MODEL, VARIANT, None, other_values)
        assert other.private != ns.private


def test_public_prefix_namespace_is_shared_and_nothing_else_is() -> None:
    public = PublicRef("platform-rules", 1, "ef" * 32)
    a = segment_namespaces("tenant", "ten_a", MODEL, VARIANT, None, None, public)
    b = segment_namespaces("user", "ten_b", MODEL, VARIANT, "bob", None, public)
    assert a.public == b.public == derive_public(MODEL, public)
    assert {a.static, a.private}.isdisjoint({b.static, b.private, b.public})
    assert segment_namespaces("off", "ten_a", MODEL, VARIANT, None, None, public).public is None
    assert derive_public(ModelIdentity("tiny", "w2", "float32"), public) != a.public
    assert derive_public(MODEL, PublicRef("platform-rules", 2, "ef" * 32)) != a.public
